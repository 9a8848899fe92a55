// ClaimAttempt (AgentLink): NATS only rings an agent's doorbell with a run's id; the agent takes the
// attempt's details here. It answers only for a run placed on the calling agent and not started yet (a
// read by primary key), and then acknowledges the dispatch with a write guarded by the same attempt, so the
// placer's ack deadline leaves it alone: the run is Packaging from then on. The same agent claiming the same
// attempt again (its first answer lost) gets the same answer and changes nothing. The answer carries what
// only the claiming agent may have: storage credentials scoped to this attempt, and the run's secrets.
import type { SchedulerContext } from '../context.js';
import type { ClaimAttemptRequest__Output, Dispatch, RenewStorageRequest__Output, StorageCredentials } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, errorCodeRetryability, errorMessage, invalid, notFound } from '../../shared/errors.js';
import { RunStatus, placedStatuses } from '../../shared/run-states.js';
import { dispatchFor } from './dispatch.js';
import { claimMember, claimedOrdinary, currentMember, gangPlace } from './gang-member.js';
import { isRunId } from '../../shared/ids.js';
import { resumedFromOf } from '../../shared/checkpoints.js';
import { checkpointForAttempt } from './checkpoints.js';
import { claimGeneration } from '../datasets/generation.js';

/**
 * Which agent is asking: the authenticated caller (scheduler/grpc/agent-service.ts passes it). The
 * request's `agent` is only a cross-check; without an authenticated caller (callers of this function
 * outside the gRPC service) it is the name.
 */
export function claimingAgent(req: ClaimAttemptRequest__Output, authenticated?: string): string {
  if (authenticated === undefined) return req.agent;
  if (req.agent && req.agent !== authenticated) throw new TrainyardError(ErrorCodes.PermissionDenied, `agent ${authenticated} cannot claim for agent ${req.agent}`);
  return authenticated;
}

export async function claimAttempt(ctx: SchedulerContext, req: ClaimAttemptRequest__Output, authenticated?: string): Promise<Dispatch> {
  const agent = claimingAgent(req, authenticated);
  if (!isRunId(req.run_id)) throw invalid(`run id "${req.run_id}" is not a run id`);
  if (!agent) throw invalid('the claiming agent is not named');
  // Not started yet, or (the same attempt claimed again by the same agent: its first answer was lost)
  // acknowledged already: a claim is idempotent, so a reply lost after the commit strands nothing.
  const row = await ctx.db.selectFrom('runs').selectAll()
    .select([claimGeneration('runs.dataset').as('dataset_generation'), claimGeneration('runs.eval_dataset').as('eval_dataset_generation')])
    .where('id', '=', req.run_id).where('agent', '=', agent).where('lease', 'is not', null)
    .where((eb) => req.attempt
      ? eb.and([eb('attempt', '=', req.attempt), eb.or([eb('status', '=', RunStatus.Scheduled), eb.and([eb('status', 'in', startedStatuses), eb('acked_at', 'is not', null)])])])
      : eb('status', '=', RunStatus.Scheduled))
    .executeTakeFirst();
  if (!row) {
    // A gang's member of node rank >= 1 (gang-member.ts) claims the same attempt without moving the run.
    const member = await claimMember(ctx, req, agent);
    if (member) return member;
    throw notFound(`run ${req.run_id}${req.attempt ? ` attempt ${req.attempt}` : ''} is not waiting to start on agent ${agent}`);
  }
  // The checkpoint this attempt starts from (a later attempt, or --resume-from), found before its
  // credentials are issued: they may read that checkpoint's folder and no other. Recorded on the run
  // (run get, the lineage) by a write guarded by the attempt's lease; a storage error leaves the dispatch
  // unacknowledged, as for the credentials below.
  const resume = row.attempt > 1 || row.resume_from ? await checkpointForAttempt(ctx, row) : null;
  if (row.attempt > 1 || row.resume_from) {
    const from = resume ? resumedFromOf(resume) : null;
    await ctx.db.updateTable('runs').set({ resumed_from: from ? JSON.stringify(from) : null }).where('id', '=', row.id).where('lease', '=', row.lease).execute();
    row.resumed_from = from;
  }
  // What only the claiming agent may have, before the claim acknowledges the dispatch: if storage cannot
  // issue credentials now, the dispatch stays unacknowledged, so the agent's retries or the ack deadline
  // (which places the run again) decide, and no run waits on an agent that gave up. A refusal that will
  // never change (a scope MinIO cannot take) ends the attempt instead, so it is not placed again for ever.
  const [storage, secrets] = await Promise.all([
    ctx.credentials.forClaim(row).catch(async (err: unknown) => {
      if (err instanceof TrainyardError && errorCodeRetryability[err.code] === 'permanent') {
        const reason = `storage credentials cannot be issued for this run: ${err.message}`;
        await ctx.runs.endAttempt(row.id, Number(row.lease), agent, RunStatus.Failed, reason);
        ctx.log.warn({ run: row.id, agent, reason }, 'claim refused for good; the run failed');
      } else {
        ctx.log.warn({ run: row.id, agent, err: errorMessage(err) }, 'could not issue storage credentials for a claim; the dispatch stays unacknowledged');
      }
      throw err;
    }),
    row.secret_names.length === 0 ? Promise.resolve([]) : ctx.db.selectFrom('run_secrets').select(['name', 'value']).where('run_id', '=', row.id).execute(),
  ]);
  const gang = await gangPlace(ctx.db, row, 0);
  if (row.agents <= 1) claimedOrdinary(row.id);
  const answer = (running: boolean): Dispatch => ({
    ...dispatchFor(row, ctx.settings.bucket), gang, storage, secrets: Object.fromEntries(secrets.map((s) => [s.name, s.value])), running,
    resume_pointer_json: resume ? JSON.stringify(resume) : '',
  });
  // Claimed again: the same answer as the first time, and no transition (the first one made it).
  if (row.status !== RunStatus.Scheduled) return answer(row.status === RunStatus.Running);
  // The acknowledgement is the Packaging transition (the agent fetches the package next), guarded again by
  // the same attempt (a requeue meanwhile wins): one statement with its event, and one round trip fewer.
  // An agent that holds this package version and its venv ready (it says which digest; a digest that is not
  // the run's changes nothing) skips Packaging: the claim makes the run Running, and the agent reports nothing.
  const ready = row.package_sha256 !== null && req.ready_package_sha256 === row.package_sha256;
  const acked = ready ? await ctx.runs.startReady(row.id, Number(row.lease), agent) : await ctx.runs.startPackaging(row.id, Number(row.lease), agent);
  if (!acked) throw notFound(`run ${req.run_id} attempt ${row.attempt} is no longer waiting to start on agent ${agent}`);
  return answer(ready);
}

/** States a claimed attempt is in once its claim was acknowledged. */
const startedStatuses = [RunStatus.Packaging, RunStatus.Running];

/**
 * New credentials for an attempt still current on the calling agent (a long run nearing their expiry), or
 * read-only ones (readScope) for a pull of many files: the same checks, a shorter session policy.
 */
export async function renewStorage(ctx: SchedulerContext, req: RenewStorageRequest__Output, agent: string): Promise<StorageCredentials> {
  if (!isRunId(req.run_id)) throw invalid(`run id "${req.run_id}" is not a run id`);
  const row = await ctx.db.selectFrom('runs').select(['id', 'attempt', 'package_object_key', 'dataset', 'dataset_sub', 'eval_dataset', 'eval_dataset_sub', 'resumed_from'])
    .where('id', '=', req.run_id).where('lease', '=', Number(req.lease)).where('agent', '=', agent)
    .where('status', 'in', placedStatuses).where('kill_requested', '=', false).executeTakeFirst();
  if (!row) {
    // A gang's member of node rank >= 1 renews the same attempt's credentials.
    const member = await currentMember(ctx.db, req.run_id, Number(req.lease), agent);
    const run = member ? await ctx.db.selectFrom('runs').select(['id', 'attempt', 'package_object_key', 'dataset', 'dataset_sub', 'eval_dataset', 'eval_dataset_sub', 'resumed_from'])
      .where('id', '=', req.run_id).where('lease', '=', Number(req.lease)).executeTakeFirst() : undefined;
    if (run && !member!.kill) return req.read_only ? ctx.credentials.issueRead(run) : ctx.credentials.issue(run);
    throw new TrainyardError(ErrorCodes.StaleLease, `run ${req.run_id}: this attempt is no longer current on agent ${agent}; no new storage credentials`);
  }
  return req.read_only ? ctx.credentials.issueRead(row) : ctx.credentials.issue(row);
}
