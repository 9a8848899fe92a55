import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { Api, streamOf } from '../client.js';
import { intFlag, keyValues, parse, requireString } from '../args.js';
import { bytes, color, progressBar, safeText, statusColor, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import { isTerminal } from '../../shared/run-states.js';
import type { Run__Output, SubmitRunRequest } from '../../shared/proto.js';
import { runLogs } from './run-logs.js';

export async function runCommand(args: string[], address: string): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'train': return train(rest, address);
    case 'get': return get(rest, address);
    case 'list': return list(rest, address);
    case 'logs': return runLogs(rest, address);
    case 'outputs': return outputs(rest, address);
    case 'kill': return kill(rest, address);
    default: throw invalid(`unknown command "run ${verb ?? ''}"; expected: run train|get|list|logs|outputs|kill`);
  }
}

function summary(r: Run__Output): string {
  const lines = [
    `${color.bold(safeText(r.id))}  ${statusColor(safeText(r.status))}${r.status_detail ? color.dim(`  (${safeText(r.status_detail)})`) : ''}`,
    `  package   ${safeText(`${r.package} ${r.version}`)}${r.output_version ? `  →  ${color.bold(safeText(r.output_version))}` : ''}`,
    `  dataset   ${safeText(r.dataset)}`,
    `  agent     ${safeText(r.agent) || '-'}${r.gpu_indices.length ? `  GPUs ${r.gpu_indices.join(',')}` : ''}  attempt ${r.attempt}/${r.max_attempts}`,
  ];
  const t = r.times;
  if (t) {
    for (const [k, v] of [['scheduled', t.scheduled_at], ['waiting', t.waiting_at], ['packaging', t.packaging_at], ['running', t.running_at], ['ended', t.ended_at]] as const) {
      if (v) lines.push(`  ${k.padEnd(9)} ${v}`);
    }
  }
  if (r.failure_reason) lines.push(`  reason    ${color.red(safeText(r.failure_reason))}`);
  if (r.results_json) lines.push(`  _results.json\n${JSON.stringify(JSON.parse(r.results_json), null, 2).split('\n').map(safeText).join('\n').replace(/^/gm, '    ')}`);
  return lines.join('\n');
}

const runJson = (r: Run__Output) => ({ ...r, results: r.results_json ? JSON.parse(r.results_json) : null });

/** The verbs that submit a run (`run train`), each a pipeline; `schedules create ... -- run VERB` takes the same. */
export const submitVerbs = ['train'] as const;

/**
 * The flags of `run train` as a SubmitRunRequest, checked before anything connects (a usage error needs no
 * scheduler); `schedules create` parses what follows its `--` with this same function.
 */
export function submitRequestFromArgs(verb: string, args: string[]): { request: SubmitRunRequest; wait: boolean; json: boolean } {
  if (!(submitVerbs as readonly string[]).includes(verb)) throw invalid(`"run ${verb}" is not a pipeline this trainyard knows; expected run ${submitVerbs.join('|')}`);
  const { values } = parse(args, {
    package: { type: 'string' }, version: { type: 'string' }, dataset: { type: 'string' },
    gpu: { type: 'boolean' }, gpus: { type: 'string' }, 'gpu-model': { type: 'string' }, 'gpu-memory-mb': { type: 'string' },
    cpus: { type: 'string' }, 'memory-mb': { type: 'string' }, selector: { type: 'string', multiple: true },
    env: { type: 'string', multiple: true }, timeout: { type: 'string' }, priority: { type: 'string' }, project: { type: 'string' },
    'idempotency-key': { type: 'string' }, 'max-attempts': { type: 'string' }, wait: { type: 'boolean' }, json: { type: 'boolean' },
  });
  const gpus = values.gpus !== undefined ? intFlag(values.gpus, 'gpus', 0, 8) : values.gpu ? 1 : 0;
  const request: SubmitRunRequest = {
    package: requireString(values.package, 'package'),
    version: values.version ?? '',
    dataset: requireString(values.dataset, 'dataset'),
    resources: {
      gpus, gpu_model: values['gpu-model'] ?? '', gpu_memory_mb: intFlag(values['gpu-memory-mb'], 'gpu-memory-mb'),
      cpus: intFlag(values.cpus, 'cpus', 0, 4096), memory_mb: intFlag(values['memory-mb'], 'memory-mb'), selector: keyValues(values.selector, 'selector'),
    },
    env: keyValues(values.env, 'env'),
    timeout_seconds: intFlag(values.timeout, 'timeout', 0, 30 * 86400),
    priority: values.priority !== undefined ? Number(values.priority) | 0 : 0,
    project: values.project ?? '',
    idempotency_key: values['idempotency-key'] ?? '',
    max_attempts: intFlag(values['max-attempts'], 'max-attempts', 0, 20),
  };
  return { request, wait: values.wait === true, json: values.json === true };
}

async function train(args: string[], address: string): Promise<number> {
  const { request, ...values } = submitRequestFromArgs('train', args);
  const api = await Api.connect(address);
  try {
    let run = await api.submitRun(request);
    if (!values.wait) {
      if (values.json) console.log(JSON.stringify(runJson(run), null, 2));
      else console.log(run.id);
      return 0;
    }
    if (!values.json) console.error(`${run.id}  ${statusColor(run.status)}`);
    for await (const r of streamOf(api.client.WatchRun({ id: run.id }))) {
      if (!values.json && r.status !== run.status) console.error(`${r.id}  ${statusColor(r.status)}${r.status_detail ? color.dim(`  (${r.status_detail})`) : ''}`);
      run = r;
    }
    if (!isTerminal(run.status)) run = await api.getRun(run.id);
    if (values.json) console.log(JSON.stringify(runJson(run), null, 2));
    else console.log(summary(run));
    return run.status === 'Successful' ? 0 : 1;
  } finally {
    api.close();
  }
}

async function get(args: string[], address: string): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } });
  const id = positionals[0] ?? '';
  if (!id) throw invalid('run get: give the run id');
  const api = await Api.connect(address);
  const run = await api.getRun(id).finally(() => api.close());
  console.log(values.json ? JSON.stringify(runJson(run), null, 2) : summary(run));
  return 0;
}

async function list(args: string[], address: string): Promise<number> {
  const { values } = parse(args, { status: { type: 'string' }, limit: { type: 'string' }, schedule: { type: 'string' }, json: { type: 'boolean' } });
  const api = await Api.connect(address);
  const res = await api.listRuns({ status: values.status ?? '', limit: intFlag(values.limit, 'limit', 0, 1000), schedule: values.schedule ?? '' }).finally(() => api.close());
  if (values.json) console.log(JSON.stringify(res.runs.map(runJson), null, 2));
  else console.log(table(['RUN', 'STATUS', 'PACKAGE', 'DATASET', 'AGENT', 'OUTPUT', 'CREATED'], res.runs.map((r) => [
    safeText(r.id), statusColor(safeText(r.status)), safeText(`${r.package} ${r.version}`), safeText(r.dataset), safeText(r.agent) || '-', safeText(r.output_version) || '-', r.times?.scheduled_at ?? '',
  ])));
  return 0;
}

async function outputs(args: string[], address: string): Promise<number> {
  const { values, positionals } = parse(args, { to: { type: 'string' }, json: { type: 'boolean' } });
  const id = positionals[0] ?? '';
  if (!id) throw invalid('run outputs: give the run id');
  const dest = path.resolve(requireString(values.to, 'to'));
  const api = await Api.connect(address);
  const written: { path: string; bytes: number }[] = [];
  try {
    let out: ReturnType<typeof createWriteStream> | null = null;
    let bar: ReturnType<typeof progressBar> | null = null;
    let got = 0;
    const close = async () => {
      if (!out) return;
      out.end();
      await once(out, 'finish');
      bar?.done();
      out = null;
    };
    for await (const chunk of streamOf(api.client.DownloadOutputs({ run_id: id }))) {
      if (chunk.file) {
        await close();
        const rel = chunk.file.path;
        const target = path.resolve(dest, ...rel.split('/'));
        if (!target.startsWith(dest + path.sep)) throw invalid(`refusing output path ${rel}: it leaves ${dest}`);
        await mkdir(path.dirname(target), { recursive: true });
        out = createWriteStream(target);
        got = 0;
        bar = progressBar(rel, Number(chunk.file.size_bytes));
        written.push({ path: rel, bytes: Number(chunk.file.size_bytes) });
      } else if (chunk.data && out) {
        const o: ReturnType<typeof createWriteStream> = out;
        if (!o.write(chunk.data)) await once(o, 'drain');
        got += chunk.data.length;
        bar?.update(got);
      }
    }
    await close();
  } finally {
    api.close();
  }
  if (values.json) console.log(JSON.stringify({ to: dest, files: written }, null, 2));
  else {
    for (const w of written) console.log(`${w.path}  ${color.dim(bytes(w.bytes))}`);
    console.log(`${color.green('✓')} ${written.length} files in ${dest}`);
  }
  return 0;
}

async function kill(args: string[], address: string): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } });
  const id = positionals[0] ?? '';
  if (!id) throw invalid('run kill: give the run id');
  const api = await Api.connect(address);
  const run = await api.killRun(id).finally(() => api.close());
  if (values.json) console.log(JSON.stringify(runJson(run), null, 2));
  else console.log(`${safeText(run.id)}  ${statusColor(safeText(run.status))}${run.kill_requested && !isTerminal(run.status) ? '  (kill sent to its agent)' : ''}`);
  return 0;
}
