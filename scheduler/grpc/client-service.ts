// The client API (service Trainyard). Each handler is a thin adapter: one call into runs/, packages/,
// datasets/, agents/ or projects; handlers.ts turns what they throw into gRPC statuses.
import type { SchedulerContext } from '../context.js';
import type { TrainyardHandlers } from '../../shared/proto/gen/trainyard/v1/Trainyard.js';
import type { GetRunRequest__Output, DownloadOutputsRequest__Output, LogLine, OutputChunk, Run, StreamLogsRequest__Output } from '../../shared/proto.js';
import { unary, clientStream, serverStream } from './handlers.js';
import { receivePackage } from '../packages/upload.js';
import { listPackageVersions } from '../packages/versions.js';
import { receiveDataset } from '../datasets/push.js';
import { listDatasets } from '../datasets/list.js';
import { submitRun } from '../runs/submit.js';
import { getRun, listRuns, runChanges } from '../runs/read.js';
import { killRun } from '../runs/kill.js';
import { streamLogs } from '../runs/logs.js';
import { runOutputs } from '../runs/outputs.js';
import { listAgents } from '../agents/list.js';
import { drainAgent } from '../agents/drain.js';
import { listProjects, setProjectLimits } from '../projects.js';
import { doctorReport } from '../doctor-report.js';

export function clientService(ctx: SchedulerContext): TrainyardHandlers {
  const { log } = ctx;
  return {
    PushPackage: clientStream(log, 'PushPackage', (call) => receivePackage(ctx, call)),
    ListPackageVersions: unary(log, 'ListPackageVersions', async (req) => ({ versions: await listPackageVersions(ctx, req.name) })),

    PushDataset: clientStream(log, 'PushDataset', (call) => receiveDataset(ctx, call)),
    ListDatasets: unary(log, 'ListDatasets', async () => ({ datasets: await listDatasets(ctx) })),

    SubmitRun: unary(log, 'SubmitRun', async (req) => getRun(ctx, await submitRun(ctx, req))),
    GetRun: unary(log, 'GetRun', (req) => getRun(ctx, req.id)),
    ListRuns: unary(log, 'ListRuns', async (req) => ({ runs: await listRuns(ctx, req) })),
    KillRun: unary(log, 'KillRun', async (req) => {
      await killRun(ctx, req.id);
      return getRun(ctx, req.id);
    }),
    StreamLogs: serverStream<StreamLogsRequest__Output, LogLine>(log, 'StreamLogs', async (req, send, signal) => {
      const o = { runId: req.run_id, follow: req.follow, afterAttempt: req.after_attempt, afterSeq: Number(req.after_seq) };
      for await (const line of streamLogs(ctx, o, signal)) await send(line);
    }),
    WatchRun: serverStream<GetRunRequest__Output, Run>(log, 'WatchRun', async (req, send, signal) => {
      for await (const run of runChanges(ctx, req.id, signal)) await send(run);
    }),
    DownloadOutputs: serverStream<DownloadOutputsRequest__Output, OutputChunk>(log, 'DownloadOutputs', async (req, send, signal) => {
      for await (const chunk of runOutputs(ctx, req.run_id, signal)) await send(chunk);
    }),

    ListAgents: unary(log, 'ListAgents', async () => ({ agents: await listAgents(ctx) })),
    DrainAgent: unary(log, 'DrainAgent', (req) => drainAgent(ctx, req.name)),

    SetProjectLimits: unary(log, 'SetProjectLimits', (req) => setProjectLimits(ctx, req)),
    ListProjects: unary(log, 'ListProjects', async () => ({ projects: await listProjects(ctx) })),

    Doctor: unary(log, 'Doctor', (req) => doctorReport(ctx, req.repair)),
  };
}
