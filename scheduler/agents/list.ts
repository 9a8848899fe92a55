// The fleet as `trainyard agents` shows it: each agent, its GPUs and which run holds each.
import type { SchedulerContext } from '../context.js';
import type { Agent } from '../../shared/proto.js';

export async function listAgents(ctx: SchedulerContext): Promise<Agent[]> {
  const { db } = ctx;
  const [agents, gpus, leases, placed] = await Promise.all([
    db.selectFrom('agents').selectAll().orderBy('name').execute(),
    db.selectFrom('agent_gpus').selectAll().orderBy('agent').orderBy('index').execute(),
    db.selectFrom('gpu_leases').selectAll().execute(),
    db.selectFrom('runs').select(['id', 'agent']).where('agent', 'is not', null).execute(),
  ]);
  const holder = new Map(leases.map((l) => [`${l.agent}/${l.gpu_index}`, l.run_id]));
  return agents.map((a) => ({
    name: a.name,
    status: a.status,
    cpus: a.cpus,
    memory_mb: a.memory_mb,
    labels: a.labels,
    last_heartbeat_at: new Date(a.last_heartbeat_at).toISOString(),
    hostname: a.hostname,
    version: a.version,
    gpus: gpus.filter((g) => g.agent === a.name).map((g) => ({
      index: g.index, uuid: g.uuid, name: g.name, memory_mb: g.memory_mb, run_id: holder.get(`${a.name}/${g.index}`) ?? '',
    })),
    run_ids: placed.filter((r) => r.agent === a.name).map((r) => r.id),
    max_runs: a.max_runs,
    accept_projects: a.accept_projects ?? [],
    ...(a.cache_use ? { cache_use: {
      venv_bytes: a.cache_use.venv_bytes, venv_cap_bytes: a.cache_use.venv_cap_bytes,
      data_bytes: a.cache_use.data_bytes ?? 0, data_cap_bytes: a.cache_use.data_cap_bytes ?? 0, package_bytes: a.cache_use.package_bytes ?? 0,
    } } : {}),
  }));
}
