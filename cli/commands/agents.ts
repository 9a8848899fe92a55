import { withApi } from '../client.js';
import { jsonFlag } from '../args.js';
import { verb, type Parsed } from '../verb.js';
import { color, safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';

const forceFlag = { type: 'boolean', description: 'also a live agent: revoke its credential now, call it lost, requeue its runs' } as const;

async function drain({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const name = positionals[0];
  if (!name) throw invalid('agents drain: give the agent name');
  return withApi(address, async (api) => {
    const a = await api.drainAgent(name);
    console.log(values.json ? JSON.stringify(a, null, 2) : `${safeText(a.name)}  ${color.yellow(a.status)}`);
    return 0;
  });
}

async function remove({ values, positionals }: Parsed<{ json: typeof jsonFlag; force: typeof forceFlag }>, address: string): Promise<number> {
  const name = positionals[0];
  if (!name) throw invalid('agents remove: give the agent name');
  return withApi(address, async (api) => {
    const r = await api.removeAgent(name, values.force === true);
    if (values.json) console.log(JSON.stringify(r, null, 2));
    else {
      console.log(`${safeText(r.name)}  ${color.yellow('removed')} (it was ${r.was})${r.requeued ? `; ${r.requeued} run(s) went back to the queue` : ''}`);
      console.log(color.dim(`its name is free; its credential is void. A box that still holds a join token can join again: revoke it (trainyard tokens revoke ID).`));
    }
    return 0;
  });
}

const gib = (v: unknown) => (Number(v) < 2 ** 30 ? `${(Number(v) / 2 ** 20).toFixed(1)} MiB` : `${(Number(v) / 2 ** 30).toFixed(2)} GiB`);

/** The venv dir's use against its cap (--venv-cache-gb), as the agent's last heartbeat said; '-' before one. */
function venvCache(c: { venv_bytes?: unknown; venv_cap_bytes?: unknown } | null | undefined): string {
  if (!c) return '-';
  return `${gib(c.venv_bytes)} / ${Number(c.venv_cap_bytes) > 0 ? gib(c.venv_cap_bytes) : 'no cap'}`;
}

/** The data cache's use against --data-cache-mb ('off' at 0), and the package cache's use; '-' before a heartbeat. */
function dataCache(c: { data_bytes?: unknown; data_cap_bytes?: unknown } | null | undefined): string {
  if (!c) return '-';
  return Number(c.data_cap_bytes) > 0 ? `${gib(c.data_bytes)} / ${gib(c.data_cap_bytes)}` : 'off';
}
const packageCache = (c: { package_bytes?: unknown } | null | undefined) => (c ? gib(c.package_bytes) : '-');

async function list({ values }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  return withApi(address, async (api) => {
    const { agents } = await api.listAgents();
    if (values.json) {
      console.log(JSON.stringify(agents, null, 2));
      return 0;
    }
    const rows: string[][] = [];
    for (const a of agents) {
      const st = a.status === 'online' ? color.green(a.status) : a.status === 'lost' ? color.red(a.status) : color.yellow(a.status);
      const labels = safeText(Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(',')) || '-';
      const slots = `${a.run_ids.length}/${a.max_runs || '∞'}`;
      const accepts = safeText(a.accept_projects.join(',')) || 'all';
      rows.push([safeText(a.name), st, slots, String(a.cpus), `${a.memory_mb} MiB`, labels, accepts, venvCache(a.cache_use), dataCache(a.cache_use), packageCache(a.cache_use), a.gpus.length ? '' : '-', safeText(a.run_ids.join(',')) || '-']);
      for (const g of a.gpus) rows.push(['', '', '', '', '', '', '', '', '', '', safeText(`GPU ${g.index} ${g.name} ${g.memory_mb} MiB`), safeText(g.run_id) || color.dim('free')]);
    }
    console.log(table(['AGENT', 'STATUS', 'SLOTS', 'CPUS', 'MEMORY', 'LABELS', 'PROJECTS', 'VENV CACHE', 'DATA CACHE', 'PACKAGES', 'GPUS', 'RUNS'], rows));
    return 0;
  });
}

export const agentsVerbs = [
  verb({ path: ['agents'], section: 'Fleet', summary: 'each agent: run slots used/total, the projects it accepts, its venv cache use against its cap, its GPUs and which run holds each', flags: { json: jsonFlag }, run: list, examples: ['trainyard agents', 'trainyard agents --json'] }),
  verb({
    path: ['agents', 'drain'], summary: 'no new runs on an agent; running ones finish; then the agent exits 0',
    args: [{ name: 'NAME', description: 'the agent name (trainyard agents shows them)' }], flags: { json: jsonFlag }, run: drain,
    examples: ['trainyard agents drain gpu-box-7'],
  }),
  verb({
    path: ['agents', 'remove'],
    summary: 'forget an agent: its name is free for a new agent and its credential is void (admin only)',
    details: 'An agent that is gone (offline or lost) is forgotten. A live one is refused unless --force, which shuts it out now: its ' +
      'credential is revoked, it is called lost and its runs go back to the queue. An agent can take a name back only with that name\'s ' +
      'credential, so this is how a replaced box\'s name is given to a new one.',
    args: [{ name: 'NAME', description: 'the agent name (trainyard agents shows them)' }], flags: { json: jsonFlag, force: forceFlag }, run: remove,
    examples: ['trainyard agents remove gpu-box-7', 'trainyard agents remove gpu-box-7 --force'],
  }),
];
