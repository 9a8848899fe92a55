import { withApi } from '../client.js';
import { jsonFlag } from '../args.js';
import { flags, verb, type Parsed } from '../verb.js';
import { safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import { parseLabels } from '../../shared/settings.js';
import { KEEP_RUNS_MAX_S } from '../../shared/retention.js';

const capFlag = (v: unknown, flag: string): number => {
  if (v === undefined) return -2;
  if (v === 'none') return -1;
  if (!/^\d+$/.test(String(v))) throw invalid(`--${flag}: expected a non-negative integer or "none", got "${String(v)}"`);
  return Number(v);
};
const show = (n: number) => (n < 0 ? '-' : String(n));
const labelsText = (l: Record<string, string>) => Object.entries(l).map(([k, v]) => `${k}=${v}`).join(',') || '-';
/** Decimal GB, as the quota is documented: 1 GB = 10^9 bytes. */
const gb = (bytes: number) => (bytes < 0 ? '-' : `${Number((bytes / 1e9).toFixed(3))} GB`);

/** --agents: KEY=VALUE,... (the labels an agent must all have); "" or "none": any agent. undefined: not given. */
function agentsFlag(v: unknown): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  const text = String(v).trim();
  if (text === '' || text === 'none') return {};
  return parseLabels(text, '--agents');
}

function boolFlag(v: unknown, flag: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === 'true' || v === 'false') return v === 'true';
  throw invalid(`--${flag}: expected true or false, got "${String(v)}"`);
}

/** --max-storage-gb: decimal GB (fractions allowed) as bytes, -1 for "none"; undefined: not given. */
function storageFlag(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (v === 'none') return -1;
  if (!/^\d+(\.\d+)?$/.test(String(v))) throw invalid(`--max-storage-gb: expected a non-negative number of GB (10^9 bytes) or "none", got "${String(v)}"`);
  return Math.round(Number(v) * 1e9);
}

const setFlags = flags({
  'max-runs': { type: 'string', value: 'N|none', description: 'most runs of the project placed at once ("none": no cap)' },
  'max-gpus': { type: 'string', value: 'N|none', description: 'most GPUs the project holds at once ("none": no cap)' },
  'max-priority': { type: 'string', value: 'N|none', description: 'highest --priority the project\'s runs may ask for ("none": no cap)' },
  agents: { type: 'string', value: 'K=V,...|none', description: 'the project\'s runs go only to agents with all these labels; a run\'s --selector narrows within them, never leaves ("none" or "": any agent)' },
  exclusive: { type: 'string', value: 'true|false', description: 'true: the project\'s runs never share an agent with another project\'s runs' },
  preemptible: { type: 'string', value: 'true|false', description: 'true: a higher-priority run may stop (preempt) the project\'s runs when nothing else is free; they are requeued, not counted as attempts (default false)' },
  'max-storage-gb': { type: 'string', value: 'N|none', description: 'storage quota, GB of 10^9 bytes (packages, datasets, run outputs); pushes and run outputs over it are refused ("none": no quota)' },
  'keep-runs': { type: 'string', value: 'AGE|none', description: 'ended runs older than this (e.g. 90d, 12h, 30m, 45s) are deleted with their objects by the placing scheduler ("none": kept)' },
  'keep-versions': { type: 'string', value: 'N|none', description: 'each package keeps its newest N versions (at least 1); older ones are deleted unless a live run or a schedule names them ("none": all kept)' },
  json: jsonFlag,
});

/** --keep-runs: an age (90d, 12h, 30m, 45s) in seconds, -1 for "none"; undefined: not given. */
function keepRunsFlag(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (v === 'none') return -1;
  const m = /^(\d+)([smhd])$/.exec(String(v));
  if (!m || Number(m[1]) === 0) throw invalid(`--keep-runs: expected an age such as 90d, 12h, 30m or 45s (more than 0), or "none", got "${String(v)}"`);
  const seconds = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  if (seconds > KEEP_RUNS_MAX_S) throw invalid(`--keep-runs: at most 36500d (100 years), got "${String(v)}"; "none" keeps everything`);
  return seconds;
}

/** --keep-versions: N >= 1, -1 for "none"; undefined: not given. */
function keepVersionsFlag(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (v === 'none') return -1;
  if (!/^\d+$/.test(String(v)) || Number(v) < 1) throw invalid(`--keep-versions: expected a number of versions (at least 1: the newest is always kept) or "none", got "${String(v)}"`);
  return Number(v);
}

/** A wait, rounded to what a reader needs: 42s, 7m 5s, 3h 20m. */
const waited = (s: number) => (s < 60 ? `${Math.floor(s)}s` : s < 3600 ? `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`);
const age = (s: number) => (s < 0 ? '-' : s % 86_400 === 0 ? `${s / 86_400}d` : s % 3600 === 0 ? `${s / 3600}h` : s % 60 === 0 ? `${s / 60}m` : `${s}s`);

async function set({ values, positionals }: Parsed<typeof setFlags>, address: string): Promise<number> {
  const project = positionals[0];
  if (!project) throw invalid('projects set: give the project name');
  // Every flag checked before the scheduler is called: a typo fails at once, whether or not it is reachable.
  let maxRuns = capFlag(values['max-runs'], 'max-runs');
  let maxGpus = capFlag(values['max-gpus'], 'max-gpus');
  const maxPriority = capFlag(values['max-priority'], 'max-priority');
  const agents = agentsFlag(values.agents);
  const exclusive = boolFlag(values.exclusive, 'exclusive');
  const preemptible = boolFlag(values.preemptible, 'preemptible');
  const storage = storageFlag(values['max-storage-gb']);
  const keepRuns = keepRunsFlag(values['keep-runs']);
  const keepVersions = keepVersionsFlag(values['keep-versions']);
  if (maxRuns === -2 && maxGpus === -2 && maxPriority === -2 && agents === undefined && exclusive === undefined && preemptible === undefined && storage === undefined && keepRuns === undefined && keepVersions === undefined) {
    throw invalid('projects set: give --max-runs, --max-gpus, --max-priority, --agents, --exclusive, --preemptible, --max-storage-gb, --keep-runs and/or --keep-versions');
  }
  return withApi(address, async (api) => {
    const current = maxRuns === -2 || maxGpus === -2 ? (await api.listProjects()).projects.find((p) => p.name === project) : undefined;
    if (maxRuns === -2) maxRuns = current?.max_runs ?? -1;
    if (maxGpus === -2) maxGpus = current?.max_gpus ?? -1;
    const p = await api.setProjectLimits({
      project, max_runs: maxRuns, max_gpus: maxGpus, set_max_priority: maxPriority !== -2, max_priority: maxPriority,
      set_agents: agents !== undefined, agents: agents ?? {}, set_exclusive: exclusive !== undefined, exclusive: exclusive ?? false,
      set_max_storage: storage !== undefined, max_storage_bytes: storage ?? -1,
      set_preemptible: preemptible !== undefined, preemptible: preemptible ?? false,
      set_keep_runs: keepRuns !== undefined, keep_runs_seconds: keepRuns ?? -1, set_keep_versions: keepVersions !== undefined, keep_versions: keepVersions ?? -1,
    });
    console.log(values.json ? JSON.stringify(p, null, 2) : `${safeText(p.name)}: max runs ${show(p.max_runs)}, max GPUs ${show(p.max_gpus)}, max priority ${show(p.max_priority)}, ` +
      `agents ${safeText(labelsText(p.agents))}, exclusive ${p.exclusive}, preemptible ${p.preemptible}, storage ${gb(p.storage_bytes)} of ${gb(p.max_storage_bytes)}, ` +
      `keep runs ${age(Number(p.keep_runs_seconds))}, keep versions ${show(p.keep_versions)}`);
    return 0;
  });
}

async function list({ values }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  return withApi(address, async (api) => {
    const { projects } = await api.listProjects();
    if (values.json) console.log(JSON.stringify(projects, null, 2));
    else console.log(table(['PROJECT', 'RUNNING', 'GPUS', 'QUEUED', 'MAX RUNS', 'MAX GPUS', 'MAX PRIORITY', 'AGENTS', 'EXCLUSIVE', 'PREEMPTIBLE', 'STORAGE', 'MAX STORAGE', 'KEEP RUNS', 'KEEP VERSIONS'], projects.map((p) => [
      safeText(p.name), String(p.running), String(p.gpus), String(p.queued), show(p.max_runs), show(p.max_gpus), show(p.max_priority),
      safeText(labelsText(p.agents)), p.exclusive ? 'yes' : 'no', p.preemptible ? 'yes' : 'no', gb(p.storage_bytes), gb(p.max_storage_bytes), age(Number(p.keep_runs_seconds)), show(p.keep_versions),
    ])));
    // Multi-agent runs that wait, and what for (README, "Multi-agent runs"): a second table, only when any.
    const gangs = values.json ? [] : projects.flatMap((p) => (p.waiting_gangs ?? []).map((g) => [safeText(p.name), safeText(g.run_id), String(g.agents), String(g.priority), waited(g.waited_seconds), safeText(g.waiting_for || 'not looked at by the placer yet')]));
    if (gangs.length) console.log(`\nWaiting multi-agent runs:\n${table(['PROJECT', 'RUN', 'AGENTS', 'PRIORITY', 'WAITED', 'WAITING FOR'], gangs)}`);
    return 0;
  });
}

export const projectsVerbs = [
  verb({ path: ['projects'], section: 'Fleet', summary: 'each project: running, GPUs held, queued, caps, agents, storage, and its waiting multi-agent runs (how long, what for)', flags: { json: jsonFlag }, run: list, examples: ['trainyard projects'] }),
  verb({
    path: ['projects', 'set'], summary: 'set a project\'s caps, agents, preemptibility, storage quota and retention (admin); what is not given stays as it is',
    args: [{ name: 'NAME', description: 'the project' }], flags: setFlags, run: set,
    examples: ['trainyard projects set vision --max-runs 4 --max-gpus 8 --max-priority 10', 'trainyard projects set vision --max-gpus none',
      'trainyard projects set vision --agents pool=vision --exclusive true', 'trainyard projects set vision --max-storage-gb 500',
      'trainyard projects set sweeps --preemptible true', 'trainyard projects set vision --keep-runs 90d --keep-versions 20'],
  }),
];
