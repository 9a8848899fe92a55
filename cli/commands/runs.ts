import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { Api, streamOf } from '../client.js';
import { intFlag, jsonFlag, keyValues, requireString, secretValues, signedIntFlag } from '../args.js';
import { parseArgs } from 'node:util';
import { flags, group, parseOptions, verb, type ArgSpec, type Flags, type Parsed } from '../verb.js';
import { bytes, color, progressBar, safeText, statusColor, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import { isTerminal } from '../../shared/run-states.js';
import type { RunMember__Output, Run__Output, SubmitRunRequest } from '../../shared/proto.js';
import { runLogs, runLogsFlags } from './run-logs.js';
import { runDiff, runDiffFlags } from './run-diff.js';
import { runMetrics, runMetricsFlags, summaryText } from './run-metrics.js';
import { Pipeline, phaseWords, pipelineWord } from '../../shared/pipelines.js';

const fmtScore = (r: { has_score: boolean; score: number }) => (r.has_score ? String(Math.round(r.score * 1e6) / 1e6) : '');

const runArg: ArgSpec = { name: 'RUN', description: 'the run id (trainyard run list shows them)' };

function summary(r: Run__Output): string {
  const lines = [
    `${color.bold(safeText(r.id))}  ${statusColor(safeText(r.status))}${r.status_detail ? color.dim(`  (${safeText(r.status_detail)})`) : ''}`,
    `  pipeline  ${safeText(r.pipeline)}`,
    `  package   ${safeText(`${r.package} ${r.version}`)}${r.output_version ? `  →  ${color.bold(safeText(r.output_version))}  ${color.dim(safeText(r.output_object_key))}` : ''}`,
    `  dataset   ${safeText(r.dataset)}${r.eval_dataset ? `  (evaluation dataset ${safeText(r.eval_dataset)})` : ''}`,
    ...(r.secret_names.length ? [`  secrets   ${safeText(r.secret_names.join(', '))} ${color.dim('(values never shown)')}`] : []),
    ...(r.has_score ? [`  score     ${color.bold(fmtScore(r))}`] : []),
    `  agent     ${safeText(r.agent) || '-'}${r.gpu_indices.length ? `  GPUs ${r.gpu_indices.join(',')}` : ''}  attempt ${r.attempt}/${r.max_attempts}`,
  ];
  if (r.agents > 1) lines.push(`  gang      ${r.agents} agents x ${r.procs_per_agent || 1} processes = ${r.agents * (r.procs_per_agent || 1)} ranks${r.prefer_same ? `, members prefer the same ${safeText(r.prefer_same)}` : ''}`);
  if (r.members?.length) lines.push(membersTable(r.members));
  const t = r.times;
  if (t) {
    for (const [k, v] of [['scheduled', t.scheduled_at], ['waiting', t.waiting_at], ['packaging', t.packaging_at], ['running', t.running_at], ['ended', t.ended_at]] as const) {
      if (v) lines.push(`  ${k.padEnd(9)} ${v}`);
    }
  }
  for (const p of r.phases ?? []) {
    const took = p.ended_at ? `${(p.ended_at - p.started_at).toFixed(3)} s` : 'did not finish';
    lines.push(`  ${'phase'.padEnd(9)} ${(phaseWords[p.name] ?? safeText(p.name)).padEnd(16)} ${new Date(p.started_at * 1000).toISOString()}  ${took}`);
  }
  for (const p of r.preemptions ?? []) lines.push(`  preempted ${p.at}  attempt ${p.attempt} on ${safeText(p.agent)}, by ${safeText(p.by_run)}`);
  const from = r.resumed_from;
  if (from) lines.push(`  resumed   from checkpoint ${from.seq} of ${safeText(from.run_id)} attempt ${from.attempt}, ${new Date(from.committed_at * 1000).toISOString()}, ${bytes(Number(from.bytes))} in ${from.files} files`);
  if (r.failure_reason) lines.push(`  reason    ${color.red(safeText(r.failure_reason))}`);
  if (r.results_json) lines.push(`  _results.json\n${JSON.stringify(JSON.parse(r.results_json), null, 2).split('\n').map(safeText).join('\n').replace(/^/gm, '    ')}`);
  return lines.join('\n');
}

/** A gang's members (README, "Multi-agent runs"): each GPU by UUID where the agent registered one, else by index. */
function membersTable(members: RunMember__Output[]): string {
  const rows = members.map((m) => [
    String(m.node_rank), safeText(m.agent),
    m.gpu_indices.map((g, i) => safeText(m.gpu_uuids[i] || String(g))).join(',') || '-',
    m.first_rank === m.last_rank ? String(m.first_rank) : `${m.first_rank}-${m.last_rank}`,
    statusColor(safeText(m.state)) + (m.ended_at ? color.dim(`  ${m.ended_at}`) : ''),
  ]);
  return `  members\n${table(['node', 'agent', 'GPUs', 'ranks', 'state'], rows).replace(/^/gm, '    ')}`;
}

const runJson = (r: Run__Output) => ({ ...r, results: r.results_json ? JSON.parse(r.results_json) : null, lineage: r.lineage_json ? JSON.parse(r.lineage_json) : null });

// What every pipeline kind takes; each verb adds its own package and version flags (and full its evaluation dataset).
const runFlags = {
  dataset: { type: 'string', value: 'NAME[/SUB]', required: true, description: 'the dataset, or a folder of it' },
  gpu: { type: 'boolean', description: 'one GPU (same as --gpus 1)' },
  gpus: { type: 'string', value: 'N', default: '0', description: 'GPUs, 0 to 8' },
  'gpu-model': { type: 'string', value: 'MODEL', description: 'GPU model the run needs, e.g. H100 (matched in the name)' },
  'gpu-memory-mb': { type: 'string', value: 'N', description: 'GPU memory each GPU must have, MiB' },
  cpus: { type: 'string', value: 'N', description: 'CPUs the run needs' },
  'memory-mb': { type: 'string', value: 'N', description: 'memory the run needs, MiB' },
  selector: { type: 'string', multiple: true, value: 'KEY=VALUE', description: 'agent label the run needs' },
  env: { type: 'string', multiple: true, value: 'KEY=VALUE', description: 'environment variable for train.py' },
  secret: { type: 'string', multiple: true, value: 'KEY=VALUE|KEY=@FILE', description: 'a secret for train.py\'s environment: never returned by any API, masked *** in logs (@FILE: the file\'s content, less a trailing newline; not visible in ps)' },
  timeout: { type: 'string', value: 'SECONDS', default: 'none', description: 'kill the run after this long' },
  priority: { type: 'string', value: 'N', default: '0', description: 'higher is placed first (a project may cap it)' },
  project: { type: 'string', value: 'P', default: "the token's project", description: 'project the run belongs to' },
  'idempotency-key': { type: 'string', value: 'K', description: 'a second submit with the same key returns the first run' },
  'max-attempts': { type: 'string', value: 'N', default: "the scheduler's", description: 'attempts after agent loss before the run fails' },
  'checkpoint-interval': { type: 'string', value: 'SECONDS|off', default: '600', description: 'upload checkpoint_directory this often while the run runs (also when it asks, and on SIGTERM)' },
  'stall-timeout': { type: 'string', value: 'SECONDS', default: 'off', description: 'no log line, checkpoint or progress mark this long: kill and requeue the run ("stalled"), resuming from its checkpoint' },
  'resume-from': { type: 'string', value: 'RUN', description: 'start from the latest checkpoint of this run (same project)' },
  'keep-checkpoints': { type: 'boolean', description: 'keep the run\'s checkpoints after it succeeds (deleted by default)' },
  wait: { type: 'boolean', description: 'follow the run until it ends; exit 0 only if Successful' },
  json: jsonFlag,
} as const;
// Multi-agent runs (README, "Multi-agent runs"): train and full only (an evaluation makes no gang).
const gangFlags = {
  agents: { type: 'string', value: 'N', default: '1', description: 'members: run on N agents at once, placed all or nothing (torchrun-style ranks)' },
  'procs-per-agent': { type: 'string', value: 'P', default: '1', description: 'processes (ranks) on each agent; WORLD_SIZE = N x P' },
  'gpus-per-agent': { type: 'string', value: 'G', default: 'P with --gpu', description: 'GPUs each member needs (same as --gpus for a gang)' },
  'prefer-same': { type: 'string', value: 'LABEL', description: 'put the members on agents sharing this label\'s value (e.g. rack) when such a group fits now; else mixed (members share a GPU model the same way)' },
} as const;
const trainFlags = flags({
  package: { type: 'string', value: 'NAME', required: true, description: 'the package to train' },
  version: { type: 'string', value: 'X.Y', default: 'the newest', description: 'the package version to train' },
  ...runFlags,
  ...gangFlags,
});
const evaluateFlags = flags({
  package: { type: 'string', value: 'NAME', required: true, description: 'the package to evaluate' },
  version: { type: 'string', value: 'X.Y', required: true, description: 'the version to score' },
  ...runFlags,
});
const fullFlags = flags({
  package: { type: 'string', value: 'NAME', required: true, description: 'the package' },
  version: { type: 'string', value: 'X.Y', default: 'the newest', description: 'the package version to start from' },
  'eval-dataset': { type: 'string', value: 'NAME[/SUB]', description: 'evaluation dataset, made local at test_data_directory (default: what process_data writes there)' },
  ...runFlags,
  ...gangFlags,
});

type SubmitValues = Parsed<typeof trainFlags>['values'] & { 'eval-dataset'?: string };
const train = ({ values }: Parsed<typeof trainFlags>, address: string) => submit(values, address, Pipeline.Train);
const evaluate = ({ values }: Parsed<typeof evaluateFlags>, address: string) => submit(values, address, Pipeline.Evaluate);
const full = ({ values }: Parsed<typeof fullFlags>, address: string) => submit(values, address, Pipeline.Full);

/** The request a submit verb's flags make; checked whole before anything connects. */
function submitRequest(values: SubmitValues, pipeline: Pipeline): SubmitRunRequest {
  const agents = intFlag(values.agents ?? '1', 'agents', 1, 64);
  const procs = intFlag(values['procs-per-agent'] ?? '1', 'procs-per-agent', 1, 16);
  if (values['gpus-per-agent'] !== undefined && values.gpus !== undefined) throw invalid('--gpus-per-agent and --gpus say the same thing (GPUs per member): give one');
  // Each process of a member has its own GPU: --gpu means one per process.
  const gpus = values['gpus-per-agent'] !== undefined ? intFlag(values['gpus-per-agent'], 'gpus-per-agent', 0, 8)
    : values.gpus !== undefined ? intFlag(values.gpus, 'gpus', 0, 8) : values.gpu ? procs : 0;
  if (gpus > 0 && gpus % procs !== 0) throw invalid(`--gpus-per-agent ${gpus} is not a multiple of --procs-per-agent ${procs} (each process gets its own GPUs)`);
  const preferSame = values['prefer-same'];
  if (preferSame !== undefined && (preferSame === '' || /[\0,=\s]/.test(preferSame))) throw invalid(`--prefer-same needs an agent label key (no ",", "=" or spaces), got ${JSON.stringify(preferSame)}`);
  if (preferSame !== undefined && agents < 2) throw invalid('--prefer-same is for multi-agent runs: give --agents 2 or more');
  // The whole request is checked before connecting: a usage error needs no scheduler.
  const request = {
    package: requireString(values.package, 'package'),
    version: values.version ?? '',
    dataset: requireString(values.dataset, 'dataset'),
    pipeline,
    eval_dataset: values['eval-dataset'] ?? '',
    resources: {
      gpus, gpu_model: values['gpu-model'] ?? '', gpu_memory_mb: intFlag(values['gpu-memory-mb'], 'gpu-memory-mb'),
      cpus: intFlag(values.cpus, 'cpus', 0, 4096), memory_mb: intFlag(values['memory-mb'], 'memory-mb'), selector: keyValues(values.selector, 'selector'),
    },
    env: keyValues(values.env, 'env'),
    secrets: secretValues(values.secret),
    timeout_seconds: intFlag(values.timeout, 'timeout', 0, 30 * 86400),
    priority: signedIntFlag(values.priority, 'priority'),
    project: values.project ?? '',
    idempotency_key: values['idempotency-key'] ?? '',
    max_attempts: intFlag(values['max-attempts'], 'max-attempts', 0, 20),
    // 0: the scheduler's default (600 s); "off": never on a timer.
    checkpoint_interval_seconds: values['checkpoint-interval'] === 'off' ? -1 : intFlag(values['checkpoint-interval'], 'checkpoint-interval', 1, 30 * 86400),
    stall_timeout_seconds: values['stall-timeout'] === 'off' ? 0 : intFlag(values['stall-timeout'], 'stall-timeout', 0, 30 * 86400),
    resume_from: values['resume-from'] ?? '',
    keep_checkpoints: values['keep-checkpoints'] === true,
    agents,
    procs_per_agent: procs,
    prefer_same: preferSame ?? '',
  };
  return request;
}

/** The verbs that submit a run, each a pipeline kind; `schedules create ... -- run VERB` takes the same. */
const submitTables: Record<string, { flags: Flags; pipeline: Pipeline }> = {
  train: { flags: trainFlags, pipeline: Pipeline.Train },
  evaluate: { flags: evaluateFlags, pipeline: Pipeline.Evaluate },
  full: { flags: fullFlags, pipeline: Pipeline.Full },
};
export const submitVerbs = Object.keys(submitTables);

/**
 * `run train|evaluate|full FLAGS...` as words (what follows `--` in `schedules create`): parsed against the
 * same flag tables as the verbs themselves, so a schedule takes exactly what a run takes.
 */
export function submitRequestFromArgs(word: string, args: string[]): { request: SubmitRunRequest; wait: boolean; json: boolean } {
  const table = submitTables[word];
  if (!table) throw invalid(`"run ${word}" is not a pipeline this trainyard knows; expected run ${submitVerbs.join('|')}`);
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args, options: parseOptions(table.flags), allowPositionals: false, strict: true }));
  } catch (err) {
    throw invalid(`run ${word}: ${(err as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, '')}`);
  }
  for (const [name, spec] of Object.entries(table.flags)) if (spec.required && values[name] === undefined) throw invalid(`run ${word}: missing --${name}`);
  return { request: submitRequest(values as SubmitValues, table.pipeline), wait: values.wait === true, json: values.json === true };
}

async function submit(values: SubmitValues, address: string, pipeline: Pipeline): Promise<number> {
  const request = submitRequest(values, pipeline);
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

async function get({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const id = positionals[0] ?? '';
  if (!id) throw invalid('run get: give the run id');
  const api = await Api.connect(address);
  // The run's metrics summary (trainyard.summary in train.py) beside it.
  const [run, metrics] = await Promise.all([api.getRun(id), api.getRunMetrics({ run_id: id, max_points: 8, names: [] })]).finally(() => api.close());
  const metricSummary = Object.fromEntries(metrics.summary.map((x) => [x.name, x.value]));
  if (values.json) console.log(JSON.stringify({ ...runJson(run), metrics_summary: metricSummary }, null, 2));
  else console.log([summary(run), ...(metrics.summary.length ? ['  metrics summary', ...summaryText(metrics).map((l) => `  ${l}`)] : [])].join('\n'));
  return 0;
}

const listFlags = flags({
  status: { type: 'string', value: 'STATUS', description: 'only runs in this status, e.g. Running, "Waiting for resources"' },
  schedule: { type: 'string', value: 'NAME', description: 'only the runs this schedule fired' },
  limit: { type: 'string', value: 'N', default: '50', description: 'at most this many runs, newest first (up to 1000)' },
  json: jsonFlag,
});

async function list({ values }: Parsed<typeof listFlags>, address: string): Promise<number> {
  const limit = intFlag(values.limit, 'limit', 0, 1000);
  const api = await Api.connect(address);
  const res = await api.listRuns({ status: values.status ?? '', limit, schedule: values.schedule ?? '' }).finally(() => api.close());
  if (values.json) console.log(JSON.stringify(res.runs.map(runJson), null, 2));
  else console.log(table(['RUN', 'KIND', 'STATUS', 'PACKAGE', 'DATASET', 'AGENT', 'OUTPUT', 'SCORE', 'CREATED'], res.runs.map((r) => [
    safeText(r.id), safeText(pipelineWord(r.pipeline)), statusColor(safeText(r.status)), safeText(`${r.package} ${r.version}`), safeText(r.dataset),
    safeText(r.agent) || '-', safeText(r.output_version) || '-', fmtScore(r) || '-', r.times?.scheduled_at ?? '',
  ])));
  return 0;
}

const outputsFlags = flags({
  to: { type: 'string', value: 'DIR', required: true, description: 'folder to write the outputs into (made if missing)' },
  json: jsonFlag,
});

async function outputs({ values, positionals }: Parsed<typeof outputsFlags>, address: string): Promise<number> {
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
    for (const w of written) console.log(`${safeText(w.path)}  ${color.dim(bytes(w.bytes))}`);
    console.log(`${color.green('✓')} ${written.length} files in ${dest}`);
  }
  return 0;
}

async function kill({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const id = positionals[0] ?? '';
  if (!id) throw invalid('run kill: give the run id');
  const api = await Api.connect(address);
  const run = await api.killRun(id).finally(() => api.close());
  if (values.json) console.log(JSON.stringify(runJson(run), null, 2));
  else console.log(`${safeText(run.id)}  ${statusColor(safeText(run.status))}${run.kill_requested && !isTerminal(run.status) ? '  (kill sent to its agent)' : ''}`);
  return 0;
}

// The run verbs, as the registry (cli/registry.ts) lists them. Last in the file: they name the flag tables above.
export const runVerbs = [
  group({ path: ['run'], section: 'Runs', summary: 'submit training, evaluation and full pipeline runs, and follow them' }),
  verb({
    path: ['run', 'train'], summary: 'submit a training run of a package version on a dataset', flags: trainFlags, run: train,
    examples: ['trainyard run train --package iris-classifier --dataset iris/train --wait', 'trainyard run train --package llm --version 2.0 --dataset corpus --gpus 4 --gpu-model H100 --env EPOCHS=3 --priority 5'],
    details: 'Without --wait it prints the run id and returns; with --wait it follows the run and exits 0 only if it is Successful.',
  }),
  verb({
    path: ['run', 'evaluate'], summary: 'score a package version on a dataset: Main.evaluate(data) returns the score; no new version', flags: evaluateFlags, run: evaluate,
    examples: ['trainyard run evaluate --package iris-classifier --version 1.1 --dataset iris/holdout --wait'],
    details: 'The data is made local and Main().evaluate(path) is called; it must return a number (anything else fails the run, saying what it returned). artifacts_directory is uploaded; with --env save_test_data=true, a copy of the data too.',
  }),
  verb({
    path: ['run', 'full'], summary: 'a full pipeline: process_data, train, evaluate, save: the next version, with its score', flags: fullFlags, run: full,
    examples: ['trainyard run full --package iris-classifier --dataset iris/train --eval-dataset iris/holdout --wait'],
    details: 'The input data is local at data_directory; process_data (when Main has it) writes training_data_directory and test_data_directory (also named evaluation_data_directory); without it the input is the training data. An --eval-dataset is made local at test_data_directory and process_data cannot overwrite it.',
  }),
  verb({ path: ['run', 'diff'], summary: 'what differed between two runs: code, data, requirements, env, agent, score', args: [{ name: 'A', description: 'a run id' }, { name: 'B', description: 'another run id' }], flags: runDiffFlags, run: runDiff, examples: ['trainyard run diff run_qubv5a2mo2syxd run_9z1k2m3n4b5v6c'] }),
  verb({ path: ['run', 'get'], summary: 'a run: status, phase times, agent (a gang: each member, its GPUs and ranks), reason, _results.json', args: [runArg], flags: { json: jsonFlag }, run: get, examples: ['trainyard run get run_qubv5a2mo2syxd'] }),
  verb({ path: ['run', 'list'], summary: 'runs, newest first, with status, package, dataset and agent', flags: listFlags, run: list, examples: ['trainyard run list --status Running', 'trainyard run list --limit 20 --json'] }),
  verb({ path: ['run', 'logs'], summary: 'a run\'s stdout and stderr, as it happens with --follow', args: [runArg], flags: runLogsFlags, run: runLogs, examples: ['trainyard run logs run_qubv5a2mo2syxd --follow', 'trainyard run logs run_qubv5a2mo2syxd --after 1:200 --json'] }),
  verb({ path: ['run', 'metrics'], summary: 'what train.py logged with `import trainyard` and the agent sampled (sys/...): curves and summary', args: [runArg], flags: runMetricsFlags, run: runMetrics, examples: ['trainyard run metrics run_qubv5a2mo2syxd', 'trainyard run metrics run_qubv5a2mo2syxd --name loss --csv', 'trainyard run metrics run_qubv5a2mo2syxd --follow'] }),
  verb({ path: ['run', 'outputs'], summary: 'download a run\'s outputs: package.zip, artifacts, data copy, _results.json', args: [runArg], flags: outputsFlags, run: outputs, examples: ['trainyard run outputs run_qubv5a2mo2syxd --to ./out'] }),
  verb({ path: ['run', 'kill'], summary: 'kill a run (queued: at once; placed: its agent is told)', args: [runArg], flags: { json: jsonFlag }, run: kill, examples: ['trainyard run kill run_qubv5a2mo2syxd'] }),
];
