// `trainyard schedules ...`: a run submitted on a cron or once at a time. What follows `--` in create is
// parsed by the same function as `trainyard run train` (submitRequestFromArgs), so a schedule takes every
// flag a run does.
import { withApi } from '../client.js';
import { Pipeline, pipelineWord } from '../../shared/pipelines.js';
import { jsonFlag } from '../args.js';
import { flags, group, verb, type Parsed } from '../verb.js';
import { color, safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import type { Schedule__Output, SubmitRunRequest__Output } from '../../shared/proto.js';
import { submitRequestFromArgs, submitVerbs } from './runs.js';

const shown = (s: string) => safeText(s) || '-';

/** What a firing submits, as the command line that would submit it. */
function describeRun(r: SubmitRunRequest__Output | null): string {
  if (!r) return '-';
  const parts = [`run ${pipelineWord(r.pipeline || Pipeline.Train)} --package ${r.package}`];
  if (r.version) parts.push(`--version ${r.version}`);
  parts.push(`--dataset ${r.dataset}`);
  if (r.eval_dataset) parts.push(`--eval-dataset ${r.eval_dataset}`);
  const res = r.resources;
  if (res?.gpus) parts.push(`--gpus ${res.gpus}`);
  if (res?.gpu_model) parts.push(`--gpu-model ${res.gpu_model}`);
  if (res?.cpus) parts.push(`--cpus ${res.cpus}`);
  if (res?.memory_mb) parts.push(`--memory-mb ${res.memory_mb}`);
  for (const [k, v] of Object.entries(res?.selector ?? {})) parts.push(`--selector ${k}=${v}`);
  for (const k of Object.keys(r.env ?? {})) parts.push(`--env ${k}=…`);
  if (r.priority) parts.push(`--priority ${r.priority}`);
  if (r.timeout_seconds) parts.push(`--timeout ${r.timeout_seconds}`);
  return safeText(parts.join(' '));
}

const when = (s: Schedule__Output) => (s.cron ? `cron "${s.cron}" (${s.timezone})` : `once at ${s.at}`);

function missedLine(s: Schedule__Output): string {
  if (s.missed_total === 0) return 'none';
  return `${s.last_missed} firing(s) passed while no scheduler ran; the catch-up at ${s.last_missed_at} fired once for them (${s.missed_total} missed in all)`;
}

function summary(s: Schedule__Output): string {
  const state = s.state === 'active' ? color.green(s.state) : color.yellow(safeText(s.state));
  const lines = [
    `${color.bold(safeText(s.name))}  ${state}  ${color.dim(`project ${safeText(s.project)}`)}`,
    `  when        ${safeText(when(s))}`,
    `  next        ${shown(s.next_fire_at)}`,
    `  submits     ${describeRun(s.run)}`,
    `  last fired  ${shown(s.last_fired_at)}${s.last_run_id ? `  →  ${safeText(s.last_run_id)}` : ''}`,
    `  firings     ${s.fired} made a run, ${s.failed} refused`,
    `  missed      ${safeText(missedLine(s))}`,
  ];
  if (s.last_error) lines.push(`  last error  ${color.red(safeText(s.last_error))}`);
  lines.push(`  created     ${shown(s.created_at)}${s.created_by ? ` by token ${safeText(s.created_by)}` : ''}`);
  return lines.join('\n');
}

const createFlags = flags({
  cron: { type: 'string', value: 'EXPR', description: 'when to fire: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first (croner syntax: ranges, steps, lists, names, L, W, #)' },
  timezone: { type: 'string', value: 'TZ', default: 'UTC', description: 'IANA time zone the cron is read in' },
  at: { type: 'string', value: 'TIME', description: 'instead of --cron: fire once at this RFC 3339 time (then the schedule is done)' },
  json: jsonFlag,
});

async function create({ values, positionals }: Parsed<typeof createFlags>, address: string): Promise<number> {
  // Everything after `--` arrives as positionals: NAME first (before `--`), then `run VERB FLAGS...`.
  const [name, word, verbWord, ...runArgs] = positionals;
  if (!name) throw invalid('schedules create: give the schedule name');
  if (word !== 'run' || !verbWord) throw invalid(`schedules create: say what to submit after "--": run ${submitVerbs.join('|')} FLAGS (schedules create NAME --cron "0 2 * * *" -- run train --package P --dataset D)`);
  const { request, wait, json } = submitRequestFromArgs(verbWord, runArgs);
  if (wait) throw invalid('--wait: a schedule\'s runs are not waited for; follow them with trainyard events --follow --kind run');
  if (request.idempotency_key) throw invalid('--idempotency-key: a schedule makes one run per firing; leave it out');
  if (values.cron === undefined && values.at === undefined) throw invalid('schedules create: give --cron "EXPR" or --at TIME');
  const s = await withApi(address, (api) => api.createSchedule({ name, cron: values.cron ?? '', timezone: values.timezone ?? '', at: values.at ?? '', run: request }));
  console.log(values.json || json ? JSON.stringify(s, null, 2) : summary(s));
  return 0;
}

async function list({ values }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const { schedules } = await withApi(address, (api) => api.listSchedules());
  if (values.json) console.log(JSON.stringify(schedules, null, 2));
  else console.log(table(['SCHEDULE', 'PROJECT', 'STATE', 'WHEN', 'NEXT', 'LAST RUN', 'FIRED', 'REFUSED', 'MISSED'], schedules.map((s) => [
    safeText(s.name), safeText(s.project), safeText(s.state), safeText(when(s)), shown(s.next_fire_at), shown(s.last_run_id),
    String(s.fired), s.failed ? color.red(String(s.failed)) : '0', String(s.missed_total),
  ])));
  return 0;
}

async function runNow({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const run = await withApi(address, (api) => api.runScheduleNow(positionals[0] ?? ''));
  console.log(values.json ? JSON.stringify(run, null, 2) : safeText(run.id));
  return 0;
}

/** get, pause, resume, delete: one call on a named schedule, then the schedule as it is now. */
function onOne(call: 'getSchedule' | 'pauseSchedule' | 'resumeSchedule' | 'deleteSchedule') {
  return async ({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> => {
    const s: Schedule__Output = await withApi(address, (api) => api[call](positionals[0] ?? ''));
    if (values.json) console.log(JSON.stringify(s, null, 2));
    else if (call === 'deleteSchedule') console.log(`${safeText(s.name)} deleted (${s.fired} run(s) fired; they keep its name: trainyard run list --schedule ${safeText(s.name)})`);
    else console.log(summary(s));
    return 0;
  };
}

const nameArg = { name: 'NAME', description: 'the schedule\'s name' };

export const scheduleVerbs = [
  group({ path: ['schedules'], section: 'Schedules and events', summary: 'submit a run on a cron, or once at a given time' }),
  verb({
    path: ['schedules', 'create'], summary: 'a schedule: what follows -- is a run train|evaluate|full command, submitted at each firing',
    args: [nameArg, { name: '-- run VERB FLAGS', description: `what each firing submits: every flag of trainyard run ${submitVerbs.join('|')} but --wait and --idempotency-key; --project sets the schedule's project (default: the token's)`, variadic: true }],
    flags: createFlags, run: create,
    examples: [
      'trainyard schedules create nightly --cron "0 2 * * *" --timezone Europe/Paris -- run train --package iris-classifier --dataset iris/train',
      'trainyard schedules create retrain-once --at 2026-01-31T03:00:00Z -- run full --package iris-classifier --dataset iris/train --eval-dataset iris/holdout',
    ],
    details: 'Each firing submits the run as a member of the schedule\'s project (its packages and datasets, its caps), and makes at most one run however many schedulers run. If no scheduler ran when firings were due, the first one back fires once for all of them and `schedules get` says how many were missed. A firing whose package or dataset is gone makes no run: the reason is in `schedules get` and `trainyard events`, and the schedule goes on. A paused schedule misses nothing. Secrets are not stored in schedules.',
  }),
  verb({ path: ['schedules', 'list'], summary: 'the schedules this token sees: state, next firing, last run, counts', flags: { json: jsonFlag }, run: list, examples: ['trainyard schedules list'] }),
  verb({ path: ['schedules', 'get'], summary: 'one schedule, with its missed and refused firings', args: [nameArg], flags: { json: jsonFlag }, run: onOne('getSchedule'), examples: ['trainyard schedules get nightly'] }),
  verb({ path: ['schedules', 'pause'], summary: 'stop firing (nothing is counted as missed while paused)', args: [nameArg], flags: { json: jsonFlag }, run: onOne('pauseSchedule'), examples: ['trainyard schedules pause nightly'] }),
  verb({ path: ['schedules', 'resume'], summary: 'fire again, from the next firing after now', args: [nameArg], flags: { json: jsonFlag }, run: onOne('resumeSchedule'), examples: ['trainyard schedules resume nightly'] }),
  verb({ path: ['schedules', 'delete'], summary: 'delete a schedule (its runs keep its name)', args: [nameArg], flags: { json: jsonFlag }, run: onOne('deleteSchedule'), examples: ['trainyard schedules delete nightly'] }),
  verb({ path: ['schedules', 'run-now'], summary: 'fire once now, whatever its state (prints the run id)', args: [nameArg], flags: { json: jsonFlag }, run: runNow, examples: ['trainyard schedules run-now nightly'] }),
];
