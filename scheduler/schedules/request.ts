// What a schedule submits: a SubmitRunRequest kept as data (jsonb), submitted by the same submitRun as
// the SubmitRun call, so a field added to the request comes along without a change here. The stored copy
// goes through proto-loader's own encoding on its way in and out, so it holds exactly the request's
// current fields with their defaults (a field the proto dropped is dropped, a new one gets its default).
import type { Transaction } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { Database } from '../db/database.js';
import type { SubmitRunRequest, SubmitRunRequest__Output } from '../../shared/proto.js';
import { loadProto } from '../../shared/proto.js';
import { invalid } from '../../shared/errors.js';
import { formatVersion, parseVersion } from '../../shared/versions.js';
import type { Principal } from '../auth/principal.js';
import { submitRun } from '../runs/submit.js';

const method = () => loadProto().trainyard.v1.Trainyard.service.SubmitRun;

/** The request as SubmitRun would receive it over the wire: every current field, defaults filled in. */
export function normalizeRequest(req: SubmitRunRequest | Record<string, unknown>): SubmitRunRequest__Output {
  const m = method();
  return m.requestDeserialize(m.requestSerialize(req as SubmitRunRequest));
}

/**
 * The copy a schedule keeps, with its project set. Refused: secrets (a schedule is data anyone with read
 * access to the project sees, and secrets are never stored in clear) and an idempotency key (every firing
 * must make its own run).
 */
export function storedRequest(req: SubmitRunRequest__Output, project: string): SubmitRunRequest__Output {
  const secrets = (req as { secrets?: Record<string, string> }).secrets;
  if (secrets && Object.keys(secrets).length > 0) {
    throw invalid('secrets are not stored in schedules: give the run its secrets another way (not --env either), or submit it yourself');
  }
  if (req.idempotency_key) throw invalid('idempotency_key: a schedule makes one run per firing; leave it out');
  // Not even an empty secrets map is kept: the stored form says nothing about secrets at all.
  const { secrets: _dropped, ...rest } = { ...normalizeRequest(req), project };
  // The version as deletes and retention compare it ("1.00" and "01.0" fire 1.0, and must keep it).
  if (rest.version) rest.version = formatVersion(parseVersion(rest.version, 'version'));
  return rest as SubmitRunRequest__Output;
}

/**
 * Who a firing submits as: a member of the schedule's project, whoever created it (that token may be
 * revoked by then). So a schedule uses its project's packages and datasets, within its project's caps.
 */
export function firingPrincipal(project: string, schedule: string): Principal {
  return { kind: 'user', tokenId: `schedule:${schedule}`, role: 'member', project };
}

/** submitRun within `trx`: its run commits or rolls back with the caller's transaction. */
export function submitIn(ctx: SchedulerContext, trx: Transaction<Database>, req: SubmitRunRequest__Output, caller: Principal, o: { quiet?: boolean } = {}): Promise<string> {
  // The placer is kicked by the caller once the transaction committed (a pass before would not see it).
  const inner: SchedulerContext = { ...ctx, db: trx, kick: () => {}, ...(o.quiet ? { log: ctx.log.child({}, { level: 'silent' }) } : {}) };
  return submitRun(inner, req, caller).then((run) => run.id);
}

class RolledBack extends Error {}

/**
 * Every check a firing's submit will make (package, version, dataset, env, resources, caps, ownership),
 * made now by submitting the request in a transaction that is rolled back: a schedule that could not
 * fire today is refused at create, naming the field, and nothing is left behind.
 */
export async function checkSubmittable(ctx: SchedulerContext, req: SubmitRunRequest__Output, caller: Principal): Promise<void> {
  try {
    await ctx.db.transaction().execute(async (trx) => {
      await submitIn(ctx, trx, req, caller, { quiet: true });
      throw new RolledBack();
    });
  } catch (err) {
    if (!(err instanceof RolledBack)) throw err;
  }
}
