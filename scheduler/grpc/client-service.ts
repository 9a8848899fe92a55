// The client API (service Trainyard): packages, datasets, runs, agents.
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { SchedulerContext } from '../context.js';
import type { TrainyardHandlers } from '../../shared/proto/gen/trainyard/v1/Trainyard.js';
import type { Run, Agent, LogLine, Project } from '../../shared/proto.js';
import { sql } from 'kysely';
import { unary, clientStream, serverStream } from './handlers.js';
import { registerUploadedPackage } from '../packages/push.js';
import { versionToProto } from '../packages/to-proto.js';
import { receiveDataset } from '../datasets/push.js';
import { datasetToProto } from '../datasets/to-proto.js';
import { submitRun } from '../runs/submit.js';
import { runToProto } from '../runs/to-proto.js';
import * as runs from '../runs/transitions.js';
import { watchRun } from '../watch.js';
import { checkName } from '../../shared/names.js';
import { invalid, invalidPackage, notFound } from '../../shared/errors.js';
import { RunStatus, isTerminal } from '../../shared/run-states.js';
import { keys, listObjects, withStorageRetry } from '../../shared/storage.js';
import type { ControlMessage } from '../../shared/subjects.js';

export function clientService(ctx: SchedulerContext): TrainyardHandlers {
  const { db, log } = ctx;

  const getRun = async (id: string): Promise<Run> => {
    const r = await db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw notFound(`run ${id} not found`);
    return runToProto(r);
  };

  return {
    PushPackage: clientStream(log, 'PushPackage', async (call) => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'trainyard-push-'));
      try {
        const file = path.join(dir, 'package.zip');
        const out = createWriteStream(file);
        let header: { name: string; description: string } | null = null;
        let bytes = 0;
        for await (const chunk of call) {
          if (chunk.part === 'header') header = { name: chunk.header!.name, description: chunk.header!.description };
          else if (chunk.part === 'data') {
            if (!header) throw invalid('package push: the first message must be the header');
            bytes += chunk.data!.length;
            if (bytes > ctx.settings.maxPackageBytes) throw invalidPackage(`package zip is larger than ${ctx.settings.maxPackageBytes} bytes (the configured limit)`);
            if (!out.write(chunk.data)) await new Promise<void>((r) => out.once('drain', () => r()));
          }
        }
        await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
        if (!header) throw invalid('package push: no header received');
        return await registerUploadedPackage(ctx, { name: header.name, description: header.description, file });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }),

    ListPackageVersions: unary(log, 'ListPackageVersions', async (req) => {
      const name = checkName('package', req.name);
      const rows = await db.selectFrom('package_versions').selectAll().where('package', '=', name).orderBy('major').orderBy('minor').execute();
      if (rows.length === 0) throw notFound(`package "${name}" not found`);
      return { versions: rows.map(versionToProto) };
    }),

    PushDataset: clientStream(log, 'PushDataset', (call) => receiveDataset(ctx, call)),

    ListDatasets: unary(log, 'ListDatasets', async () => {
      const rows = await db.selectFrom('datasets').selectAll().orderBy('name').execute();
      return { datasets: rows.map(datasetToProto) };
    }),

    SubmitRun: unary(log, 'SubmitRun', async (req) => getRun(await submitRun(ctx, req))),

    GetRun: unary(log, 'GetRun', (req) => getRun(req.id)),

    ListRuns: unary(log, 'ListRuns', async (req) => {
      let q = db.selectFrom('runs').selectAll().orderBy('created_at', 'desc').limit(Math.min(Math.max(req.limit || 50, 1), 1000));
      if (req.status) q = q.where('status', '=', req.status as RunStatus);
      return { runs: (await q.execute()).map(runToProto) };
    }),

    KillRun: unary(log, 'KillRun', async (req) => {
      const run = await getRun(req.id);
      if (isTerminal(run.status!)) return run;
      // Not placed yet: it ends here and never starts.
      const unplaced = await runs.endUnplaced(db, req.id, RunStatus.Killed, 'killed before it started');
      if (unplaced) {
        log.info({ run: req.id, status: RunStatus.Killed }, 'run status');
        ctx.runChanged(req.id);
        return getRun(req.id);
      }
      const placed = await runs.requestKill(db, req.id);
      if (placed?.agent && placed.lease !== null) {
        const msg: ControlMessage = { type: 'kill', runId: req.id, lease: placed.lease };
        ctx.nats.publish(ctx.subjects.control(placed.agent), JSON.stringify(msg));
        log.info({ run: req.id, agent: placed.agent }, 'kill sent to agent');
      }
      ctx.runChanged(req.id);
      return getRun(req.id);
    }),

    StreamLogs: serverStream<Parameters<TrainyardHandlers['StreamLogs']>[0]['request'], LogLine>(log, 'StreamLogs', async (req, send, signal) => {
      await getRun(req.run_id);
      const waiter = watchRun(ctx, req.run_id);
      try {
        let attempt = 0;
        let seq = Number(req.after_seq) || 0;
        let sawEnd = false;
        while (!signal.aborted) {
          const lines = await db.selectFrom('run_logs').selectAll()
            .where('run_id', '=', req.run_id)
            .where((eb) => eb.or([eb('attempt', '>', attempt), eb.and([eb('attempt', '=', attempt), eb('seq', '>', seq)])]))
            .orderBy('attempt').orderBy('seq').limit(1000).execute();
          for (const l of lines) {
            await send({ attempt: l.attempt, seq: l.seq, stream: l.stream, text: l.text, at: l.at.toISOString() });
            attempt = l.attempt;
            seq = l.seq;
          }
          if (lines.length === 1000) continue;
          if (!req.follow || sawEnd) return;
          const { status } = await getRun(req.run_id);
          // One more read after the end, for lines that landed just before the final status.
          if (isTerminal(status!)) { sawEnd = true; continue; }
          await waiter.wait(2000, signal);
        }
      } finally {
        waiter.close();
      }
    }),

    WatchRun: serverStream<Parameters<TrainyardHandlers['WatchRun']>[0]['request'], Run>(log, 'WatchRun', async (req, send, signal) => {
      const waiter = watchRun(ctx, req.id);
      try {
        let last = '';
        while (!signal.aborted) {
          const run = await getRun(req.id);
          const key = `${run.status}|${run.attempt}|${run.agent}|${run.status_detail}|${run.kill_requested}`;
          if (key !== last) { await send(run); last = key; }
          if (isTerminal(run.status!)) return;
          await waiter.wait(2000, signal);
        }
      } finally {
        waiter.close();
      }
    }),

    DownloadOutputs: serverStream<Parameters<TrainyardHandlers['DownloadOutputs']>[0]['request'], { file?: { path: string; size_bytes: number }; data?: Buffer }>(log, 'DownloadOutputs', async (req, send, signal) => {
      const run = await getRun(req.run_id);
      if (!run.attempt) throw notFound(`run ${req.run_id} has no outputs: it never started`);
      const prefix = keys.attemptPrefix(req.run_id, run.attempt!);
      const objects = await listObjects(ctx.minio, ctx.settings.bucket, prefix, { ...ctx.storageRetry, signal });
      if (objects.length === 0) throw notFound(`run ${req.run_id} has no outputs in the bucket (${prefix})`);
      for (const o of objects) {
        await send({ file: { path: o.key.slice(prefix.length), size_bytes: o.size } });
        const body = await withStorageRetry(`download ${o.key}`, () => ctx.minio.getObject(ctx.settings.bucket, o.key), { ...ctx.storageRetry, signal });
        for await (const chunk of body) await send({ data: chunk as Buffer });
      }
    }),

    ListAgents: unary(log, 'ListAgents', async () => ({ agents: await listAgents(ctx) })),

    SetProjectLimits: unary(log, 'SetProjectLimits', async (req) => {
      const project = checkName('project', req.project);
      const cap = (n: number, what: string) => {
        if (!Number.isInteger(n) || n < -1) throw invalid(`${what} must be -1 (no cap) or a non-negative integer, got ${n}`);
        return n < 0 ? null : n;
      };
      const values = { project, max_runs: cap(req.max_runs, 'max_runs'), max_gpus: cap(req.max_gpus, 'max_gpus') };
      await db.insertInto('project_limits').values(values)
        .onConflict((oc) => oc.column('project').doUpdateSet({ max_runs: values.max_runs, max_gpus: values.max_gpus })).execute();
      log.info(values, 'project limits set');
      ctx.kick(); // a raised cap may let queued runs start
      return (await listProjects(ctx)).find((p) => p.name === project)!;
    }),

    ListProjects: unary(log, 'ListProjects', async () => ({ projects: await listProjects(ctx) })),

    DrainAgent: unary(log, 'DrainAgent', async (req) => {
      const row = await db.updateTable('agents').set({ status: 'draining' }).where('name', '=', req.name).where('status', 'in', ['online', 'draining']).returning('name').executeTakeFirst();
      if (!row) {
        const exists = await db.selectFrom('agents').select('status').where('name', '=', req.name).executeTakeFirst();
        if (!exists) throw notFound(`agent "${req.name}" not found`);
        throw invalid(`agent "${req.name}" is ${exists.status}; only an online agent can be drained`);
      }
      const msg: ControlMessage = { type: 'drain' };
      ctx.nats.publish(ctx.subjects.control(req.name), JSON.stringify(msg));
      log.info({ agent: req.name }, 'agent draining');
      const agent = (await listAgents(ctx)).find((a) => a.name === req.name);
      return agent!;
    }),
  };
}

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
  }));
}

export async function listProjects(ctx: SchedulerContext): Promise<Project[]> {
  const { rows } = await sql<{ name: string; max_runs: number | null; max_gpus: number | null; running: number; gpus: number; queued: number }>`
    WITH names AS (SELECT project FROM runs UNION SELECT project FROM project_limits)
    SELECT n.project AS name, l.max_runs, l.max_gpus,
      (SELECT count(*)::int FROM runs r WHERE r.project = n.project AND r.agent IS NOT NULL) AS running,
      (SELECT coalesce(sum(gpus), 0)::int FROM runs r WHERE r.project = n.project AND r.agent IS NOT NULL) AS gpus,
      (SELECT count(*)::int FROM runs r WHERE r.project = n.project AND r.agent IS NULL AND r.status IN ('Scheduled', 'Waiting for resources')) AS queued
    FROM names n LEFT JOIN project_limits l USING (project) ORDER BY n.project`.execute(ctx.db);
  return rows.map((r) => ({ ...r, max_runs: r.max_runs ?? -1, max_gpus: r.max_gpus ?? -1 }));
}
