import { withApi } from '../client.js';
import { jsonFlag } from '../args.js';
import { flags, verb, type Parsed } from '../verb.js';
import { safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';

const capFlag = (v: unknown, flag: string): number => {
  if (v === undefined) return -2;
  if (v === 'none') return -1;
  if (!/^\d+$/.test(String(v))) throw invalid(`--${flag}: expected a non-negative integer or "none", got "${String(v)}"`);
  return Number(v);
};
const show = (n: number) => (n < 0 ? '-' : String(n));

const setFlags = flags({
  'max-runs': { type: 'string', value: 'N|none', description: 'most runs of the project placed at once ("none": no cap)' },
  'max-gpus': { type: 'string', value: 'N|none', description: 'most GPUs the project holds at once ("none": no cap)' },
  'max-priority': { type: 'string', value: 'N|none', description: 'highest --priority the project\'s runs may ask for ("none": no cap)' },
  json: jsonFlag,
});

async function set({ values, positionals }: Parsed<typeof setFlags>, address: string): Promise<number> {
  const project = positionals[0];
  if (!project) throw invalid('projects set: give the project name');
  return withApi(address, async (api) => {
    const current = (await api.listProjects()).projects.find((p) => p.name === project);
    let maxRuns = capFlag(values['max-runs'], 'max-runs');
    let maxGpus = capFlag(values['max-gpus'], 'max-gpus');
    const maxPriority = capFlag(values['max-priority'], 'max-priority');
    if (maxRuns === -2 && maxGpus === -2 && maxPriority === -2) throw invalid('projects set: give --max-runs, --max-gpus and/or --max-priority (a number, or "none")');
    if (maxRuns === -2) maxRuns = current?.max_runs ?? -1;
    if (maxGpus === -2) maxGpus = current?.max_gpus ?? -1;
    const p = await api.setProjectLimits({ project, max_runs: maxRuns, max_gpus: maxGpus, set_max_priority: maxPriority !== -2, max_priority: maxPriority });
    console.log(values.json ? JSON.stringify(p, null, 2) : `${safeText(p.name)}: max runs ${show(p.max_runs)}, max GPUs ${show(p.max_gpus)}, max priority ${show(p.max_priority)}`);
    return 0;
  });
}

async function list({ values }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  return withApi(address, async (api) => {
    const { projects } = await api.listProjects();
    if (values.json) console.log(JSON.stringify(projects, null, 2));
    else console.log(table(['PROJECT', 'RUNNING', 'GPUS', 'QUEUED', 'MAX RUNS', 'MAX GPUS', 'MAX PRIORITY'], projects.map((p) => [
      safeText(p.name), String(p.running), String(p.gpus), String(p.queued), show(p.max_runs), show(p.max_gpus), show(p.max_priority),
    ])));
    return 0;
  });
}

export const projectsVerbs = [
  verb({ path: ['projects'], section: 'Fleet', summary: 'each project: running, GPUs held, queued, caps', flags: { json: jsonFlag }, run: list, examples: ['trainyard projects'] }),
  verb({
    path: ['projects', 'set'], summary: 'set a project\'s caps (admin); a cap not given stays as it is',
    args: [{ name: 'NAME', description: 'the project' }], flags: setFlags, run: set,
    examples: ['trainyard projects set vision --max-runs 4 --max-gpus 8 --max-priority 10', 'trainyard projects set vision --max-gpus none'],
  }),
];
