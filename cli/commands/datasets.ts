import type * as grpc from '@grpc/grpc-js';
import { stat } from 'node:fs/promises';
import { Api, connectClient } from '../client.js';
import { jsonFlag, requireString } from '../args.js';
import { flags, group, verb, type Parsed } from '../verb.js';
import { bytes, color, progressBar, safeText, table } from '../format.js';
import { walkFiles } from '../../shared/local-files.js';
import { fromGrpcError, invalid } from '../../shared/errors.js';
import type { Dataset__Output, PresignDatasetPartsRequest, PresignDatasetPartsResponse__Output } from '../../shared/proto.js';
import { pushMessages, type PushMessage } from '../dataset-push.js';
import { DIRECT_PART_BYTES, storeDirect } from '../dataset-direct.js';
import path from 'node:path';

const pushFlags = flags({
  name: { type: 'string', value: 'NAME', required: true, description: 'dataset name (runs name it, or a folder of it, with --dataset)' },
  'via-scheduler': { type: 'boolean', description: `send every byte through the scheduler; by default files of ${DIRECT_PART_BYTES / 1024 / 1024} MiB or more are stored straight into MinIO by URLs the scheduler signs (and go through it anyway when MinIO cannot be reached from here)` },
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
  let sent = 0;
  // Large files are stored directly and named last, so the small ones stream while their parts go up.
  const large = values['via-scheduler'] ? [] : files.filter((f) => f.size >= DIRECT_PART_BYTES);
  const largeSet = new Set(large.map((f) => f.rel));
  const ordered = [...files.filter((f) => !largeSet.has(f.rel)), ...large];
  const stop = new AbortController();
  const presign = (req: PresignDatasetPartsRequest) => new Promise<PresignDatasetPartsResponse__Output>((resolve, reject) => {
    // A scheduler from before direct storing answers UNIMPLEMENTED: the push goes through it, as it always did.
    client.PresignDatasetParts(req, { deadline: Date.now() + 60_000 }, (err, res) => (err ? reject(fromGrpcError(err)) : resolve(res!)));
  });
  const store = storeDirect(large.map((f) => ({ ...f, abs: path.join(dir, ...f.rel.split('/')) })), name, presign, {
    signal: stop.signal,
    onBytes: (n) => { sent += n; bar.update(Math.min(sent, total)); },
    onFallback: (why) => { if (!values.json) process.stderr.write(`${color.yellow('!')} ${safeText(why)}\n`); },
  });
  // The service's own serializer for the header and file starts; data messages come encoded (cli/dataset-push.ts).
  const method = (client.constructor as grpc.ServiceClientConstructor).service.PushDataset as grpc.MethodDefinition<object, Dataset__Output>;
  const serialize = (m: PushMessage) => (Buffer.isBuffer(m) ? m : method.requestSerialize(m));
  const dataset = await new Promise<Dataset__Output>((resolve, reject) => {
    // Once the call has its answer (a refusal, say), nothing more is read or sent: the loop below stops.
    let answered!: () => void;
    const ended = new Promise<void>((r) => { answered = r; });
    let done = false;
    const call = client.makeClientStreamRequest<PushMessage, Dataset__Output>(method.path, serialize, method.responseDeserialize, (err, res) => {
      done = true;
      answered();
      if (err) reject(fromGrpcError(err));
      else resolve(res!);
    });
    (async () => {
      for await (const { message, bytes } of pushMessages(dir, name, ordered, { files: largeSet, store })) {
        if (done) return;
        if (!call.write(message)) await Promise.race([new Promise<void>((r) => call.once('drain', () => r())), ended]);
        sent += bytes;
        // A file that went through the stream after some of its parts had been stored directly counts twice.
        if (bytes) bar.update(Math.min(sent, total));
      }
      bar.done();
      call.end();
    })().catch((err: unknown) => { call.cancel(); reject(err as Error); });
  }).finally(async () => {
    // Uploads the push did not take (it failed, or a file went through the stream after all) are given up.
    stop.abort();
    await store.abort();
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
