import { Api } from '../client.js';
import { parse } from '../args.js';
import { color, safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import { joinTokenCommand } from './tokens.js';

export async function agentsCommand(args: string[], address: string): Promise<number> {
  // `agents join-token ...` has flags of its own.
  const jt = args.indexOf('join-token');
  if (jt >= 0 && args.slice(0, jt).every((a) => a.startsWith('-'))) return joinTokenCommand([...args.slice(0, jt), ...args.slice(jt + 1)], address);
  const { values, positionals } = parse(args, { json: { type: 'boolean' } });
  const api = await Api.connect(address);
  try {
    if (positionals[0] === 'drain') {
      const name = positionals[1];
      if (!name) throw invalid('agents drain: give the agent name');
      const a = await api.drainAgent(name);
      console.log(values.json ? JSON.stringify(a, null, 2) : `${safeText(a.name)}  ${color.yellow(a.status)}`);
      return 0;
    }
    if (positionals.length) throw invalid(`unknown command "agents ${positionals[0]}"; expected: agents, agents drain NAME`);
    const { agents } = await api.listAgents();
    if (values.json) {
      console.log(JSON.stringify(agents, null, 2));
      return 0;
    }
    const rows: string[][] = [];
    for (const a of agents) {
      const st = a.status === 'online' ? color.green(a.status) : a.status === 'lost' ? color.red(a.status) : color.yellow(a.status);
      const labels = safeText(Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(',')) || '-';
      rows.push([safeText(a.name), st, String(a.cpus), `${a.memory_mb} MiB`, labels, a.gpus.length ? '' : '-', safeText(a.run_ids.join(',')) || '-']);
      for (const g of a.gpus) rows.push(['', '', '', '', '', safeText(`GPU ${g.index} ${g.name} ${g.memory_mb} MiB`), safeText(g.run_id) || color.dim('free')]);
    }
    console.log(table(['AGENT', 'STATUS', 'CPUS', 'MEMORY', 'LABELS', 'GPUS', 'RUNS'], rows));
    return 0;
  } finally {
    api.close();
  }
}
