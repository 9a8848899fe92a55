// Doctor (`trainyard doctor`): the invariant check of scheduler/invariants.ts, run now on request, as the
// wire report: what is wrong now (repaired or not), and what the placer's sweep has recorded so far.
import type { SchedulerContext } from './context.js';
import type { DoctorReport } from '../shared/proto.js';
import { doctor, type Violation } from './invariants.js';
import { auditStorage } from './storage/storage-audit.js';

export async function doctorReport(ctx: SchedulerContext, repair: boolean): Promise<DoctorReport> {
  const { agentLostAfterMs, dispatchAckTimeoutMs, attemptLeaseBeats, packagingDeadlineS } = ctx.settings;
  const r = await doctor({ db: ctx.db, runs: ctx.runs, log: ctx.log, agentLostAfterMs, dispatchAckTimeoutMs, attemptLeaseBeats, packagingDeadlineMs: packagingDeadlineS * 1000 }, repair);
  const wire = (v: Violation, at: Date) => ({ kind: v.kind, run_id: v.runId, agent: v.agent, detail: v.detail, repaired: v.repaired, found_at: at.toISOString() });
  const now = new Date();
  return {
    current: r.current.map((v) => wire(v, now)),
    recorded_total: r.recordedTotal,
    recorded_by_kind: r.recordedByKind,
    recent: r.recent.map((v) => wire(v, v.foundAt)),
  };
}

/** `doctor --storage`: the bucket against the rows (storage/storage-audit.ts), in the same report. */
export async function storageDoctorReport(ctx: SchedulerContext, repair: boolean, graceS: number): Promise<DoctorReport> {
  const storage = await auditStorage(ctx, { repair, graceS });
  return { current: [], recorded_total: 0, recorded_by_kind: [], recent: [], storage };
}
