// The client API (service Trainyard). Each handler is a thin adapter: it asks the policy
// (scheduler/auth/policy.ts) whether the caller may, then makes one call into runs/, packages/, datasets/,
// agents/, projects or auth/; handlers.ts authenticated the caller and turns what they throw into statuses.
import { submitRuns } from '../runs/submit-batch.js';
import { packageLineage } from '../runs/lineage.js';
import type { SchedulerContext } from '../context.js';
import type { TrainyardHandlers } from '../../shared/proto/gen/trainyard/v1/Trainyard.js';
import type {
  GetRunRequest__Output, DownloadOutputsRequest__Output, ListEventsRequest__Output, ListEventsResponse, LogLine, OutputChunk, Run, StreamLogsRequest__Output,
} from '../../shared/proto.js';
import { unary, clientStream, serverStream, type Gate } from './handlers.js';
import { receivePackage } from '../packages/upload.js';
import { listPackageVersions } from '../packages/versions.js';
import { receiveDataset } from '../datasets/push.js';
import { listDatasets } from '../datasets/list.js';
import { SubmitGroup } from '../runs/submit-group.js';
import { runToProto } from '../runs/to-proto.js';
import { authorizeRun, getRun, listRuns, runChanges } from '../runs/read.js';
import { getRunMetrics } from '../runs/metrics-read.js';
import { killRun } from '../runs/kill.js';
import { streamLogs } from '../runs/logs.js';
import { runOutputs } from '../runs/outputs.js';
import { listAgents } from '../agents/list.js';
import { drainAgent } from '../agents/drain.js';
import { removeAgent } from '../agents/remove.js';
import { listProjects, setProjectLimits } from '../projects.js';
import { doctorReport, storageDoctorReport } from '../doctor-report.js';
import { authenticateClient } from '../auth/authenticate.js';
import { Actions, authorize, visibleProject } from '../auth/policy.js';
import type { StreamLimiter } from '../auth/streams.js';
import { type TokenVerifier, checkRole, createToken, listTokens, revokeToken } from '../auth/tokens.js';
import { createSchedule } from '../schedules/create.js';
import { authorizedSchedule, listSchedules, scheduleToProto } from '../schedules/read.js';
import { deleteSchedule, pauseSchedule, resumeSchedule } from '../schedules/state.js';
import { fireNow } from '../schedules/fire.js';
import { followEvents, listEvents } from '../events/read.js';
import { projectUsage } from '../usage/project-usage.js';
import { createWebhook, deleteWebhook, listWebhookDeliveries, listWebhooks, testWebhook } from '../webhooks/manage.js';
import { presignDatasetParts } from '../datasets/presign-parts.js';
import { deleteDatasetRequest, deletePackageRequest, deleteRunRequest } from '../storage/delete-requests.js';

/** A join token lives an hour unless asked otherwise: long enough to start a box, short enough to leak. */
const JOIN_TOKEN_DEFAULT_S = 3600;

/**
 * `auth`: the token verifier and stream cap, shared with the web console's API (scheduler/http/), so a
 * revocation takes effect on both at once and a token's streams are counted across both.
 */
export function clientService(ctx: SchedulerContext, auth: { tokens: TokenVerifier; streams: StreamLimiter }): TrainyardHandlers {
  const { tokens } = auth;
  const g: Gate = { log: ctx.log, authenticate: (md) => authenticateClient(tokens, md), streams: auth.streams };
  // SubmitRun calls in flight together are committed together (runs/submit-group.ts).
  const submits = new SubmitGroup(ctx);
  return {
    PushPackage: clientStream(g, 'PushPackage', (call, caller) => receivePackage(ctx, call, caller)),
    ListPackageVersions: unary(g, 'ListPackageVersions', async (req, caller) => ({ versions: await listPackageVersions(ctx, req.name, caller) })),
    PackageLineage: unary(g, 'PackageLineage', (req, caller) => packageLineage(ctx, req, caller)),

    PushDataset: clientStream(g, 'PushDataset', (call, caller) => {
      const cancelled = new AbortController();
      call.once('cancelled', () => cancelled.abort());
      return receiveDataset(ctx, call, caller, cancelled.signal);
    }),
    PresignDatasetParts: unary(g, 'PresignDatasetParts', (req, caller) => presignDatasetParts(ctx, req, caller)),
    ListDatasets: unary(g, 'ListDatasets', async (_req, caller) => ({ datasets: await listDatasets(ctx, visibleProject(caller)) })),

    SubmitRun: unary(g, 'SubmitRun', async (req, caller) => runToProto(await submits.submit(req, caller))),
    SubmitRuns: unary(g, 'SubmitRuns', async (req, caller) => ({ runs: (await submitRuns(ctx, req.runs ?? [], caller)).map((r) => runToProto(r)) })),
    GetRun: unary(g, 'GetRun', async (req, caller) => {
      await authorizeRun(ctx, caller, req.id, Actions.ReadRun);
      return getRun(ctx, req.id);
    }),
    ListRuns: unary(g, 'ListRuns', async (req, caller) => ({ runs: await listRuns(ctx, { ...req, project: visibleProject(caller) }) })),
    KillRun: unary(g, 'KillRun', async (req, caller) => {
      await authorizeRun(ctx, caller, req.id, Actions.KillRun);
      await killRun(ctx, req.id);
      return getRun(ctx, req.id);
    }),
    StreamLogs: serverStream<StreamLogsRequest__Output, LogLine>(g, 'StreamLogs', async (req, caller, send, signal) => {
      await authorizeRun(ctx, caller, req.run_id, Actions.ReadRun);
      const o = { runId: req.run_id, follow: req.follow, afterAttempt: req.after_attempt, afterSeq: Number(req.after_seq) };
      for await (const line of streamLogs(ctx, o, signal)) await send(line);
    }),
    WatchRun: serverStream<GetRunRequest__Output, Run>(g, 'WatchRun', async (req, caller, send, signal) => {
      await authorizeRun(ctx, caller, req.id, Actions.ReadRun);
      for await (const run of runChanges(ctx, req.id, signal)) await send(run);
    }),
    GetRunMetrics: unary(g, 'GetRunMetrics', async (req, caller) => {
      await authorizeRun(ctx, caller, req.run_id, Actions.ReadRun);
      return getRunMetrics(ctx, req);
    }),
    DownloadOutputs: serverStream<DownloadOutputsRequest__Output, OutputChunk>(g, 'DownloadOutputs', async (req, caller, send, signal) => {
      await authorizeRun(ctx, caller, req.run_id, Actions.ReadRun);
      for await (const chunk of runOutputs(ctx, req.run_id, signal)) await send(chunk);
    }),

    ListAgents: unary(g, 'ListAgents', async (_req, caller) => {
      authorize(caller, Actions.Admin);
      return { agents: await listAgents(ctx) };
    }),
    DrainAgent: unary(g, 'DrainAgent', (req, caller) => {
      authorize(caller, Actions.Admin);
      return drainAgent(ctx, req.name);
    }),
    RemoveAgent: unary(g, 'RemoveAgent', (req, caller) => {
      authorize(caller, Actions.Admin);
      return removeAgent(ctx, req);
    }),

    SetProjectLimits: unary(g, 'SetProjectLimits', (req, caller) => {
      authorize(caller, Actions.Admin);
      return setProjectLimits(ctx, req);
    }),
    ListProjects: unary(g, 'ListProjects', async (_req, caller) => {
      const only = visibleProject(caller);
      return { projects: (await listProjects(ctx)).filter((p) => only === null || p.name === only) };
    }),

    Doctor: unary(g, 'Doctor', (req, caller) => {
      authorize(caller, Actions.Admin);
      return req.storage ? storageDoctorReport(ctx, req.repair, Number(req.storage_grace_seconds)) : doctorReport(ctx, req.repair);
    }),

    CreateToken: unary(g, 'CreateToken', async (req, caller) => {
      authorize(caller, Actions.Admin);
      const t = await createToken(ctx.db, { project: req.project, role: checkRole(req.role), name: req.name, expiresInSeconds: Number(req.expires_in_seconds) });
      ctx.log.info({ token: t.info.id, project: t.info.project, role: t.info.role, by: caller.kind === 'user' ? caller.tokenId : '' }, 'token created');
      return t;
    }),
    ListTokens: unary(g, 'ListTokens', async (_req, caller) => {
      authorize(caller, Actions.Admin);
      return { tokens: await listTokens(ctx.db) };
    }),
    RevokeToken: unary(g, 'RevokeToken', async (req, caller) => {
      authorize(caller, Actions.Admin);
      const info = await revokeToken(ctx.db, req.id);
      tokens.forget(req.id);
      // Its open streams on this scheduler end now; other schedulers' within a re-read (auth/streams.ts).
      auth.streams.endToken(req.id, `token ${req.id} was revoked at ${info.revoked_at}`);
      ctx.log.info({ token: info.id, by: caller.kind === 'user' ? caller.tokenId : '' }, 'token revoked');
      return info;
    }),
    CreateJoinToken: unary(g, 'CreateJoinToken', async (req, caller) => {
      authorize(caller, Actions.Admin);
      const t = await createToken(ctx.db, { project: 'default', role: 'join', name: req.name, expiresInSeconds: Number(req.expires_in_seconds) || JOIN_TOKEN_DEFAULT_S, uses: req.uses });
      ctx.log.info({ token: t.info.id, expiresAt: t.info.expires_at, uses: req.uses || 'any' }, 'join token created');
      return t;
    }),

    CreateSchedule: unary(g, 'CreateSchedule', (req, caller) => createSchedule(ctx, req, caller)),
    ListSchedules: unary(g, 'ListSchedules', async (_req, caller) => ({ schedules: await listSchedules(ctx, caller) })),
    GetSchedule: unary(g, 'GetSchedule', async (req, caller) => scheduleToProto(await authorizedSchedule(ctx, caller, req.name, Actions.ReadSchedule))),
    PauseSchedule: unary(g, 'PauseSchedule', async (req, caller) => pauseSchedule(ctx, await authorizedSchedule(ctx, caller, req.name, Actions.ManageSchedule))),
    ResumeSchedule: unary(g, 'ResumeSchedule', async (req, caller) => resumeSchedule(ctx, await authorizedSchedule(ctx, caller, req.name, Actions.ManageSchedule))),
    DeleteSchedule: unary(g, 'DeleteSchedule', async (req, caller) => deleteSchedule(ctx, await authorizedSchedule(ctx, caller, req.name, Actions.ManageSchedule))),
    RunScheduleNow: unary(g, 'RunScheduleNow', async (req, caller) => getRun(ctx, await fireNow(ctx, await authorizedSchedule(ctx, caller, req.name, Actions.ManageSchedule)))),

    ListEvents: unary(g, 'ListEvents', async (req, caller) => ({ events: await listEvents(ctx, caller, req) })),
    FollowEvents: serverStream<ListEventsRequest__Output, ListEventsResponse>(g, 'FollowEvents', async (req, caller, send, signal) => {
      for await (const events of followEvents(ctx, caller, req, signal)) await send({ events });
    }),

    CreateWebhook: unary(g, 'CreateWebhook', (req, caller) => createWebhook(ctx, req, caller)),
    ListWebhooks: unary(g, 'ListWebhooks', async (_req, caller) => ({ webhooks: await listWebhooks(ctx, caller) })),
    DeleteWebhook: unary(g, 'DeleteWebhook', (req, caller) => deleteWebhook(ctx, caller, req.name)),
    TestWebhook: unary(g, 'TestWebhook', (req, caller) => testWebhook(ctx, caller, req.name)),
    ListWebhookDeliveries: unary(g, 'ListWebhookDeliveries', async (req, caller) => ({ deliveries: await listWebhookDeliveries(ctx, caller, req) })),

    ProjectUsage: unary(g, 'ProjectUsage', (req, caller) => projectUsage(ctx, caller, req)),
    DeleteRun: unary(g, 'DeleteRun', (req, caller) => deleteRunRequest(ctx, caller, req.id)),
    DeletePackage: unary(g, 'DeletePackage', (req, caller) => deletePackageRequest(ctx, caller, req.name, req.version)),
    DeleteDataset: unary(g, 'DeleteDataset', (req, caller) => deleteDatasetRequest(ctx, caller, req.name)),
  };
}
