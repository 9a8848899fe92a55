// The agent API (service AgentLink). Agents may talk to any scheduler; everything they say is checked
// against Postgres by session (for the agent) and by lease (for an attempt).
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { AgentLinkHandlers } from '../../shared/proto/gen/trainyard/v1/AgentLink.js';
import type { HeldAttempt } from '../../shared/proto.js';
import { unary } from './handlers.js';
import { checkName } from '../../shared/names.js';
import { invalid } from '../../shared/errors.js';
import * as runs from '../runs/transitions.js';
import { finishAttempt } from '../runs/complete.js';
import { RunStatus } from '../../shared/run-states.js';

export function agentService(ctx: SchedulerContext): AgentLinkHandlers {
  const { db, log, settings } = ctx;

  /**
   * Compares what an agent says it runs with what Postgres says it should: attempts it holds that are
   * not current are cancelled; acknowledged attempts it no longer holds were lost with its process.
   */
  const reconcile = async (agent: string, held: HeldAttempt[], requeueMissing: boolean): Promise<HeldAttempt[]> => {
    const placed = await db.selectFrom('runs').select(['id', 'lease', 'acked_at', 'kill_requested']).where('agent', '=', agent).execute();
    const current = new Map(placed.map((r) => [r.id, r]));
    const heldIds = new Set<string>();
    const cancel: HeldAttempt[] = [];
    for (const h of held) {
      heldIds.add(h.run_id!);
      const r = current.get(h.run_id!);
      if (!r || r.lease !== Number(h.lease)) cancel.push({ run_id: h.run_id, lease: h.lease });
    }
    if (requeueMissing) {
      for (const r of placed) {
        if (heldIds.has(r.id) || r.acked_at === null) continue;
        const changed = await runs.requeue(db, r.id, r.lease!, `agent ${agent} restarted and lost the attempt`, true);
        if (changed) {
          log.info({ run: r.id, status: changed.status, agent }, 'run status');
          ctx.runChanged(r.id);
        }
      }
    }
    return cancel;
  };

  return {
    Register: unary(log, 'Register', async (req) => {
      const name = checkName('agent', req.name);
      if (req.cpus < 0 || req.memory_mb < 0) throw invalid('cpus and memory_mb must not be negative');
      const gpus = req.gpus ?? [];
      const indices = new Set(gpus.map((g) => g.index));
      if (indices.size !== gpus.length) throw invalid('GPU indices must be distinct');
      const session = await db.transaction().execute(async (trx) => {
        const row = await trx.insertInto('agents').values({
          name, hostname: req.hostname, version: req.version, status: 'online', session: sql<number>`nextval('agent_session_seq')` as unknown as number,
          cpus: req.cpus, memory_mb: req.memory_mb, labels: JSON.stringify(req.labels ?? {}), last_heartbeat_at: new Date(), registered_at: new Date(),
        }).onConflict((oc) => oc.column('name').doUpdateSet({
          hostname: req.hostname, version: req.version, status: 'online', session: sql`nextval('agent_session_seq')`,
          cpus: req.cpus, memory_mb: req.memory_mb, labels: JSON.stringify(req.labels ?? {}), last_heartbeat_at: sql`now()`, registered_at: sql`now()`,
          unresponsive_since: null,
        })).returning('session').executeTakeFirstOrThrow();
        await trx.deleteFrom('agent_gpus').where('agent', '=', name).execute();
        if (gpus.length) {
          await trx.insertInto('agent_gpus').values(gpus.map((g) => ({ agent: name, index: g.index, uuid: g.uuid, name: g.name, memory_mb: g.memory_mb }))).execute();
        }
        return row.session;
      });
      const cancel = await reconcile(name, req.held ?? [], true);
      log.info({ agent: name, session, gpus: gpus.length, cpus: req.cpus, held: req.held?.length ?? 0, cancel: cancel.length }, 'agent registered');
      ctx.kick();
      return { session, heartbeat_interval_ms: settings.heartbeatIntervalMs, subject_prefix: settings.subjectPrefix, cancel };
    }),

    Heartbeat: unary(log, 'Heartbeat', async (req) => {
      // A draining agent stays draining; a leaving one goes offline (it holds nothing by then).
      const status = sql<string>`CASE WHEN ${req.leaving} THEN 'offline' WHEN ${req.draining} THEN 'draining' ELSE status END`;
      const row = await db.updateTable('agents').set({ last_heartbeat_at: sql`now()`, status: status as never, unresponsive_since: null })
        .where('name', '=', req.name).where('session', '=', req.session).where('status', 'in', ['online', 'draining'])
        .returning('status').executeTakeFirst();
      if (!row) return { reregister: !req.leaving, cancel: [], drain: false };
      if (row.status === 'offline') {
        log.info({ agent: req.name }, 'agent left');
        return { reregister: false, cancel: [], drain: true };
      }
      const cancel = await reconcile(req.name, req.held ?? [], false);
      return { reregister: false, cancel, drain: row.status === 'draining' };
    }),

    ReportStatus: unary(log, 'ReportStatus', async (req) => {
      let changed: runs.Changed | null = null;
      if (req.status === 'accepted') await runs.acknowledge(db, req.run_id, req.lease);
      else if (req.status === RunStatus.Packaging) changed = await runs.startPackaging(db, req.run_id, req.lease);
      else if (req.status === RunStatus.Running) changed = await runs.startRunning(db, req.run_id, req.lease);
      else throw invalid(`unknown status report "${req.status}"`);
      if (changed) {
        log.info({ run: changed.id, status: changed.status, attempt: changed.attempt, agent: changed.agent }, 'run status');
        ctx.runChanged(changed.id);
      }
      const run = await db.selectFrom('runs').select(['lease', 'agent', 'kill_requested']).where('id', '=', req.run_id).executeTakeFirst();
      return { stop: !run || run.lease !== req.lease || run.agent === null || run.kill_requested };
    }),

    AppendLogs: unary(log, 'AppendLogs', async (req) => {
      const run = await db.selectFrom('runs').select(['lease', 'agent', 'attempt', 'kill_requested']).where('id', '=', req.run_id).executeTakeFirst();
      if (!run || run.lease !== req.lease) return { acked_seq: 0, stop: true };
      const cap = settings.maxLogLinesPerAttempt;
      const lines = (req.lines ?? []).filter((l) => l.seq > 0 && l.seq <= cap + 1).map((l) => ({
        run_id: req.run_id,
        attempt: run.attempt,
        seq: l.seq,
        stream: l.seq === cap + 1 ? 'system' : l.stream || 'stdout',
        // Postgres text cannot hold NUL; the agent already replaced invalid UTF-8.
        text: l.seq === cap + 1 ? `[trainyard: log truncated after ${cap} lines]` : l.text.replaceAll('\0', '\uFFFD'),
        at: l.at ? new Date(l.at) : new Date(),
      }));
      let acked = 0;
      for (const l of req.lines ?? []) acked = Math.max(acked, l.seq);
      if (lines.length) {
        await db.insertInto('run_logs').values(lines).onConflict((oc) => oc.columns(['run_id', 'attempt', 'seq']).doNothing()).execute();
        await db.updateTable('runs').set({ last_log_seq: sql`greatest(last_log_seq, ${acked})` }).where('id', '=', req.run_id).execute();
        ctx.runChanged(req.run_id);
      }
      return { acked_seq: acked, stop: run.agent === null || run.kill_requested };
    }),

    FinishAttempt: unary(log, 'FinishAttempt', (req) => finishAttempt(ctx, req)),
  };
}
