// `trainyard schedules ...`: a run submitted on a cron or once at a time. What follows `--` in create is
// parsed by the same function as `trainyard run train` (submitRequestFromArgs), so a schedule takes every
// flag a run does.
import { Api } from '../client.js';
import { parse } from '../args.js';
import { color, safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import type { Schedule__Output, SubmitRunRequest__Output } from '../../shared/proto.js';
import { submitRequestFromArgs, submitVerbs } from './runs.js';

export const SCHEDULES_HELP = `trainyard schedules — submit a run on a cron, or once at a given time

  trainyard schedules create NAME (--cron "EXPR" [--timezone TZ] | --at TIME) [--json] -- run ${submitVerbs.join('|')} FLAGS...
  trainyard schedules list [--json]
  trainyard schedules get NAME [--json]
  trainyard schedules pause NAME | resume NAME | delete NAME [--json]
  trainyard schedules run-now NAME [--json]   fire once now, whatever its state (prints the run id)
  trainyard run list --schedule NAME          the runs a schedule fired

create:
  --cron EXPR     5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first
                  (croner syntax: ranges, steps, lists, names, L, W, #)
  --timezone TZ   IANA time zone the cron is read in (default: UTC)
  --at TIME       RFC 3339 with an offset: fire once at that time (then the schedule is done)
  -- run train    what each firing submits: every flag of \`trainyard run train\` but --wait and
                  --idempotency-key; --project sets the schedule's project (default: the token's)

Each firing submits the run as a member of the schedule's project (its packages and datasets, its caps),
and makes at most one run however many schedulers run. If no scheduler ran when firings were due, the
first one back fires once for all of them and \`schedules get\` says how many were missed. A firing whose
package or dataset is gone makes no run: the reason is in \`schedules get\` and \`trainyard events\`, and
the schedule goes on. A paused schedule misses nothing: resume fires from then on. Secrets are not
stored in schedules.

Examples:
  trainyard schedules create nightly --cron "0 2 * * *" --timezone Europe/Paris -- run train --package iris-classifier --dataset iris/train
  trainyard schedules create retrain-once --at 2026-01-31T03:00:00Z -- run train --package iris-classifier --dataset iris --gpu
  trainyard schedules get nightly`;

const shown = (s: string) => safeText(s) || '-';

/** What a firing submits, as the command line that would submit it. */
function describeRun(r: SubmitRunRequest__Output | null): string {
  if (!r) return '-';
  const parts = [`run train --package ${r.package}`];
  if (r.version) parts.push(`--version ${r.version}`);
  parts.push(`--dataset ${r.dataset}`);
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

async function create(args: string[], address: string): Promise<number> {
  const dash = args.indexOf('--');
  if (dash < 0) throw invalid('schedules create: say what to submit after "--": schedules create NAME --cron "0 2 * * *" -- run train --package P --dataset D');
  const own = parse(args.slice(0, dash), { cron: { type: 'string' }, timezone: { type: 'string' }, at: { type: 'string' }, json: { type: 'boolean' } });
  const name = own.positionals[0];
  if (!name || own.positionals.length > 1) throw invalid('schedules create: give one schedule name before the flags');
  const [word, verb, ...runArgs] = args.slice(dash + 1);
  if (word !== 'run' || !verb) throw invalid(`schedules create: after "--" comes "run ${submitVerbs.join('|')} ..." (what each firing submits)`);
  const { request, wait, json } = submitRequestFromArgs(verb, runArgs);
  if (wait) throw invalid('--wait: a schedule\'s runs are not waited for; follow them with trainyard events --follow --kind run');
  if (request.idempotency_key) throw invalid('--idempotency-key: a schedule makes one run per firing; leave it out');
  if (own.values.cron === undefined && own.values.at === undefined) throw invalid('schedules create: give --cron "EXPR" or --at TIME');
  const api = await Api.connect(address);
  const s = await api.createSchedule({
    name, cron: own.values.cron ?? '', timezone: own.values.timezone ?? '', at: own.values.at ?? '', run: request,
  }).finally(() => api.close());
  console.log(own.values.json || json ? JSON.stringify(s, null, 2) : summary(s));
  return 0;
}

export async function schedulesCommand(args: string[], address: string): Promise<number> {
  const [verb, ...rest] = args;
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (verb === undefined || verb === 'help' || verb === '--help' || verb === '-h' || own.includes('--help') || own.includes('-h')) {
    console.log(SCHEDULES_HELP);
    return verb === undefined ? 2 : 0;
  }
  if (verb === 'create') return create(rest, address);
  const { values, positionals } = parse(rest, { json: { type: 'boolean' } });
  const api = await Api.connect(address);
  try {
    if (verb === 'list') {
      if (positionals.length) throw invalid('schedules list takes no arguments');
      const { schedules } = await api.listSchedules();
      if (values.json) console.log(JSON.stringify(schedules, null, 2));
      else console.log(table(['SCHEDULE', 'PROJECT', 'STATE', 'WHEN', 'NEXT', 'LAST RUN', 'FIRED', 'REFUSED', 'MISSED'], schedules.map((s) => [
        safeText(s.name), safeText(s.project), safeText(s.state), safeText(when(s)), shown(s.next_fire_at), shown(s.last_run_id),
        String(s.fired), s.failed ? color.red(String(s.failed)) : '0', String(s.missed_total),
      ])));
      return 0;
    }
    const name = positionals[0];
    if (!name || positionals.length > 1) throw invalid(`schedules ${verb}: give one schedule name`);
    if (verb === 'run-now') {
      const run = await api.runScheduleNow(name);
      console.log(values.json ? JSON.stringify(run, null, 2) : safeText(run.id));
      return 0;
    }
    const calls: Record<string, (name: string) => Promise<Schedule__Output>> = {
      get: api.getSchedule, pause: api.pauseSchedule, resume: api.resumeSchedule, delete: api.deleteSchedule,
    };
    const call = calls[verb];
    if (!call) throw invalid(`unknown command "schedules ${verb}"; expected: schedules create|list|get|pause|resume|delete|run-now (see trainyard schedules --help)`);
    const s = await call(name);
    if (values.json) console.log(JSON.stringify(s, null, 2));
    else if (verb === 'delete') console.log(`${safeText(s.name)} deleted (${s.fired} run(s) fired; they keep its name: trainyard run list --schedule ${safeText(s.name)})`);
    else console.log(summary(s));
    return 0;
  } finally {
    api.close();
  }
}
