import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Api, connectClient } from '../client.js';
import { jsonFlag, requireString } from '../args.js';
import { flags, group, verb, type Parsed } from '../verb.js';
import { bytes, color, progressBar, safeText, table } from '../format.js';
import { walkFiles } from '../../shared/storage.js';
import { fromGrpcError, invalid } from '../../shared/errors.js';
import type { Dataset__Output } from '../../shared/proto.js';

const pushFlags = flags({
  name: { type: 'string', value: 'NAME', required: true, description: 'dataset name (runs name it, or a folder of it, with --dataset)' },
  json: jsonFlag,
});

async function push({ values, positionals }: Parsed<typeof pushFlags>, address: string): Promise<number> {
  const dir = positionals[0];
  if (!dir) throw invalid('dataset push: give the folder, e.g. trainyard dataset push ./data --name my-data');
  const name = requireString(values.name, 'name');
  const st = await stat(dir).catch(() => { throw invalid(`dataset push: ${dir} does not exist`); });
  if (!st.isDirectory()) throw invalid(`dataset push: ${dir} is not a folder`);
  const files = await walkFiles(dir);
  if (files.length === 0) throw invalid(`dataset push: ${dir} has no files`);
  const total = files.reduce((n, f) => n + f.size, 0);
  const client = await connectClient(address);
  const bar = progressBar(`pushing ${name}`, total);
  const dataset = await new Promise<Dataset__Output>((resolve, reject) => {
    const call = client.PushDataset((err, res) => (err ? reject(fromGrpcError(err)) : resolve(res!)));
    const write = async (msg: object) => { if (!call.write(msg)) await new Promise<void>((r) => call.once('drain', () => r())); };
    (async () => {
      await write({ header: { name, size_bytes: total } });
      let sent = 0;
      for (const f of files) {
        await write({ file: { path: f.rel, size_bytes: f.size } });
        for await (const chunk of createReadStream(path.join(dir, ...f.rel.split('/')), { highWaterMark: 1024 * 1024 })) {
          await write({ data: chunk });
          sent += (chunk as Buffer).length;
          bar.update(sent);
        }
      }
      bar.done();
      call.end();
    })().catch(reject);
  });
  client.close();
  if (values.json) console.log(JSON.stringify(dataset, null, 2));
  else console.log(`${color.green('✓')} dataset ${color.bold(safeText(dataset.name))}: ${files.length} files pushed (${dataset.file_count} files, ${bytes(Number(dataset.size_bytes))} in all)`);
  return 0;
}

async function list({ values }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const api = await Api.connect(address);
  const res = await api.listDatasets();
  api.close();
  if (values.json) console.log(JSON.stringify(res.datasets, null, 2));
  else console.log(table(['NAME', 'FILES', 'SIZE', 'UPDATED'], res.datasets.map((d) => [safeText(d.name), String(d.file_count), bytes(Number(d.size_bytes)), d.updated_at])));
  return 0;
}

export const datasetVerbs = [
  group({ path: ['dataset'], section: 'Packages and datasets', summary: 'datasets: push a folder, list them' }),
  verb({
    path: ['dataset', 'push'], summary: 'push a folder of files as a dataset (progress bar on a terminal)',
    args: [{ name: 'DIR', description: 'the folder to push' }], flags: pushFlags, run: push,
    examples: ['trainyard dataset push ./data --name my-data'],
  }),
  verb({ path: ['dataset', 'list'], summary: 'datasets: files, size, last update', flags: { json: jsonFlag }, run: list, examples: ['trainyard dataset list --json'] }),
];
