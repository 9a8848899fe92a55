import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Api, connectClient } from '../client.js';
import { parse, requireString } from '../args.js';
import { bytes, color, progressBar, safeText, table } from '../format.js';
import { zipDir } from '../../shared/zip.js';
import { fromGrpcError, invalid, invalidPackage } from '../../shared/errors.js';
import type { PackageVersion__Output } from '../../shared/proto.js';

const CHUNK = 1024 * 1024;

export async function packageCommand(args: string[], address: string): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'push') return push(rest, address);
  if (verb === 'versions') return versions(rest, address);
  throw invalid(`unknown command "package ${verb ?? ''}"; expected: package push DIR|ZIP --name NAME, package versions NAME`);
}

async function push(args: string[], address: string): Promise<number> {
  const { values, positionals } = parse(args, { name: { type: 'string' }, description: { type: 'string' }, json: { type: 'boolean' } });
  const source = positionals[0];
  if (!source) throw invalid('package push: give the package folder or zip, e.g. trainyard package push ./my-package --name my-package');
  const name = requireString(values.name, 'name');
  const st = await stat(source).catch(() => { throw invalid(`package push: ${source} does not exist`); });
  let zip = source;
  let tmp: string | null = null;
  try {
    if (st.isDirectory()) {
      tmp = await mkdtemp(path.join(os.tmpdir(), 'trainyard-pkg-'));
      zip = path.join(tmp, 'package.zip');
      // Caches and virtualenvs never belong in a package.
      const { files } = await zipDir(source, zip, (rel) => /(^|\/)(__pycache__|\.git|\.venv|venv)$/.test(rel));
      if (files === 0) throw invalidPackage(`package folder ${source} is empty`);
    } else if (!source.endsWith('.zip')) {
      throw invalid(`package push: ${source} is neither a folder nor a .zip file`);
    }
    const size = (await stat(zip)).size;
    const client = await connectClient(address);
    const bar = progressBar(`pushing ${name}`, size);
    const version = await new Promise<PackageVersion__Output>((resolve, reject) => {
      const call = client.PushPackage((err, res) => (err ? reject(fromGrpcError(err)) : resolve(res!)));
      call.write({ header: { name, description: values.description ?? '' } });
      (async () => {
        let sent = 0;
        for await (const chunk of createReadStream(zip, { highWaterMark: CHUNK })) {
          if (!call.write({ data: chunk })) await new Promise<void>((r) => call.once('drain', () => r()));
          sent += (chunk as Buffer).length;
          bar.update(sent);
        }
        bar.done();
        call.end();
      })().catch(reject);
    });
    client.close();
    if (values.json) console.log(JSON.stringify(version, null, 2));
    else console.log(`${color.green('✓')} ${safeText(version.package)} ${color.bold(safeText(version.version))} stored (${bytes(Number(version.size_bytes))}, ${safeText(version.object_key)})`);
    return 0;
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

async function versions(args: string[], address: string): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } });
  const name = positionals[0];
  if (!name) throw invalid('package versions: give the package name');
  const api = await Api.connect(address);
  const res = await api.listPackageVersions({ name });
  api.close();
  if (values.json) {
    console.log(JSON.stringify(res.versions, null, 2));
    return 0;
  }
  console.log(table(['VERSION', 'SOURCE', 'SCORE', 'SIZE', 'CREATED', 'OBJECT'], res.versions.map((v) => [
    safeText(v.version), v.source === 'run' ? safeText(`run ${v.run_id} (trained ${v.trained_from})`) : 'upload',
    v.has_score ? String(Math.round(v.score * 1e6) / 1e6) : '-', bytes(Number(v.size_bytes)), v.created_at, safeText(v.object_key),
  ])));
  return 0;
}
