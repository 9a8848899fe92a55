import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Api, withApi, connectClient } from '../client.js';
import { jsonFlag, requireString } from '../args.js';
import { flags, group, verb, type Parsed } from '../verb.js';
import { bytes, color, progressBar, safeText, table } from '../format.js';
import { zipDir } from '../../shared/zip.js';
import { fromGrpcError, invalid, invalidPackage } from '../../shared/errors.js';
import type { PackageVersion__Output } from '../../shared/proto.js';

const CHUNK = 1024 * 1024;

const pushFlags = flags({
  name: { type: 'string', value: 'NAME', required: true, description: 'package name; each push of a name makes its next major version' },
  description: { type: 'string', value: 'TEXT', description: 'what this version is' },
  json: jsonFlag,
});

async function push({ values, positionals }: Parsed<typeof pushFlags>, address: string): Promise<number> {
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
      call.write({ header: { name, description: values.description ?? '', size_bytes: size } });
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

async function versions({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
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

async function lineage({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const [name = '', version = ''] = positionals;
  const res = await withApi(address, (api) => api.packageLineage({ name, version }));
  if (values.json) {
    console.log(JSON.stringify(res, null, 2));
    return 0;
  }
  for (const s of res.steps) {
    const score = s.has_score ? `  score ${Math.round(s.score * 1e6) / 1e6}` : '';
    console.log(`${color.bold(safeText(`${res.package} ${s.version}`))}  sha256 ${s.sha256.slice(0, 16)}…${score}  ${color.dim(s.created_at)}`);
    if (s.source === 'run') {
      const data = `${safeText(s.dataset)}${s.eval_dataset ? ` + ${safeText(s.eval_dataset)}` : ''}`;
      const manifest = s.data_manifest_sha256 ? ` (manifest ${s.data_manifest_sha256.slice(0, 16)}…)` : '';
      console.log(`  ← ${safeText(s.pipeline)} run ${safeText(s.run_id)} on ${safeText(s.agent) || '?'}: ${safeText(s.trained_from)} with data ${data}${manifest}`);
    } else {
      console.log('  ← uploaded');
    }
  }
  return 0;
}

export const packageVerbs = [
  group({ path: ['package'], section: 'Packages and datasets', summary: 'ML packages: push a version, list versions' }),
  verb({
    path: ['package', 'push'], summary: 'push a package folder or zip as the next major version (checked before it is stored)',
    args: [{ name: 'DIR|ZIP', description: 'the package folder (holding train.py) or a zip of one' }], flags: pushFlags, run: push,
    examples: ['trainyard package push ./my-package --name my-package', 'trainyard package push ./my-package.zip --name my-package --description "first cut"'],
  }),
  verb({
    path: ['package', 'versions'], summary: 'a package\'s versions and where each came from',
    args: [{ name: 'NAME', description: 'the package name' }], flags: { json: jsonFlag }, run: versions,
    examples: ['trainyard package versions my-package'],
  }),
  verb({
    path: ['package', 'lineage'], summary: 'walk back from a version to the upload it descends from, run by run (data, agent, score)',
    args: [{ name: 'NAME', description: 'the package name' }, { name: 'VERSION', description: 'the version, X.Y' }], flags: { json: jsonFlag }, run: lineage,
    examples: ['trainyard package lineage iris-classifier 1.2', 'trainyard package lineage iris-classifier 1.2 --json'],
    details: 'Each run\'s full record (every data file with its SHA-256, the venv\'s packages, the GPUs) is in `trainyard run get RUN --json` (lineage) and _lineage.json beside _results.json.',
  }),
];
