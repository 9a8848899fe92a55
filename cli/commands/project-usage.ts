// `trainyard projects usage`: what each project used (scheduler/usage/project-usage.ts).
import { withApi } from '../client.js';
import { jsonFlag } from '../args.js';
import { flags, verb, type Parsed } from '../verb.js';
import { safeText, table } from '../format.js';
import { parseSince } from './events.js';

const usageFlags = flags({
  since: { type: 'string', value: '30d|RFC3339', default: '30d', description: 'count from then: a time ago (12h, 7d, 30d) or an RFC 3339 time' },
  project: { type: 'string', value: 'P', description: 'only this project (default: every project the token sees)' },
  json: jsonFlag,
});

const h = (x: number) => x.toFixed(x < 10 ? 3 : 1);

async function usage({ values }: Parsed<typeof usageFlags>, address: string): Promise<number> {
  const since = parseSince(values.since ?? '30d');
  const r = await withApi(address, (api) => api.projectUsage({ since, project: values.project ?? '' }));
  if (values.json) { console.log(JSON.stringify(r, null, 2)); return 0; }
  console.log(`from ${r.since} to ${r.until}`);
  console.log(table(['PROJECT', 'GPU-HOURS', 'BY MODEL', 'CPU-HOURS', 'ATTEMPTS', 'RUNS BY OUTCOME', 'STORAGE'], r.projects.map((p) => [
    safeText(p.project), h(p.gpu_hours), safeText(p.gpu_hours_by_model.map((m) => `${m.model} ${h(m.hours)}`).join(', ')) || '-',
    h(p.cpu_hours), String(p.attempts), safeText(p.runs_by_outcome.map((o) => `${o.status} ${o.runs}`).join(', ')) || '-', `${Number((Number(p.storage_bytes) / 1e9).toFixed(3))} GB`,
  ])));
  return 0;
}

export const projectUsageVerbs = [
  verb({
    path: ['projects', 'usage'], summary: 'per project: GPU-hours by model, CPU-hours, runs by outcome, storage held',
    flags: usageFlags, run: usage,
    examples: ['trainyard projects usage', 'trainyard projects usage --since 7d --json'],
    details: 'GPU-hours are the GPUs an attempt held times its time on its agent, from when the agent reported it started (Packaging, or Running) to its end as the agent reported it, or to the moment the scheduler took it back (agent lost, handed back): so a requeued attempt counts what it held, and the next one its own. CPU-hours count the CPUs the run asked for (--cpus). Each attempt\'s time is clipped to the window. Runs by outcome: runs submitted in the window, by their status now. Storage: what the project holds now, as its quota counts it. Members and readers see their project; admins every project. Attempts are counted from the upgrade that added this (migration 025) on.',
  }),
];
