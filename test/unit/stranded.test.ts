// Doctor's stranded attempts (scheduler/invariants.ts, issue 20): each kind an attempt can be left in at a
// handshake is found, said, and repaired when asked — a dispatch never acknowledged, an acknowledged
// attempt its agent no longer lists in its heartbeats, Packaging past the deadline. (Each is normally
// handled as it happens, test/faults/handshakes.test.ts; this is what doctor shows when that missed one.)
import t from 'tap';
import pino from 'pino';
import { testDatabase } from '../helpers/stack.js';
import { RunTransitions } from '../../scheduler/runs/transitions.js';
import { Invariants, ViolationKind } from '../../scheduler/invariants.js';

t.test('doctor finds and repairs each kind of stranded attempt', async (t) => {
  const { db } = await testDatabase(t);
  const runs = new RunTransitions(db, () => {});
  const ids = ['unacked', 'forgotten', 'packaging', 'healthy'];
  await db.insertInto('runs').values(ids.map((id) => ({
    id, package: 'p', package_major: 1, package_minor: 0, package_object_key: 'k', dataset: 'd', gpus: 0,
    selector: '{}', env: '{}', max_attempts: 3, timeout_seconds: 0,
  }))).execute();
  await db.insertInto('agents').values({ name: 'a', status: 'online', session: 1, cpus: 8, memory_mb: 1000 }).execute();
  const { placed } = await runs.assign(ids.map((id) => ({ id, agent: 'a', gpuIndices: [], session: 1 })));
  const lease = (id: string) => Number(placed.find((p) => p.id === id)!.lease);
  for (const id of ['forgotten', 'packaging', 'healthy']) await runs.startPackaging(id, lease(id), 'a');
  await db.updateTable('runs').set({ dispatched_at: new Date(Date.now() - 3_600_000) }).where('id', '=', 'unacked').execute();
  await db.updateTable('runs').set({ missed_beats: 3 }).where('id', '=', 'forgotten').execute();
  await db.updateTable('runs').set({ packaging_at: new Date(Date.now() - 3 * 3_600_000) }).where('id', '=', 'packaging').execute();

  const inv = new Invariants({ db, runs, log: pino({ level: 'silent' }), agentLostAfterMs: 15_000, dispatchAckTimeoutMs: 10_000, attemptLeaseBeats: 3, packagingDeadlineMs: 7_200_000 });
  const seen = await inv.check({ repair: false, judgeSilence: false });
  const kinds = Object.fromEntries(seen.map((v) => [v.runId, v.kind]));
  t.same(kinds, { unacked: ViolationKind.DispatchUnacknowledged, forgotten: ViolationKind.AttemptNotHeld, packaging: ViolationKind.PackagingPastDeadline }, 'each stranded attempt, by kind; the healthy one is not named');
  t.ok(seen.every((v) => !v.repaired && v.agent === 'a' && v.detail.length > 0), 'said, not repaired, without --repair');

  const fixed = await inv.check({ repair: true, judgeSilence: false });
  t.ok(fixed.length === 3 && fixed.every((v) => v.repaired), 'repaired with --repair');
  const rows = Object.fromEntries((await db.selectFrom('runs').select(['id', 'status', 'lost_attempts', 'agent']).execute()).map((r) => [r.id, r]));
  t.match(rows.unacked, { status: 'Waiting for resources', lost_attempts: 0, agent: null }, 'an unacknowledged dispatch is placed again, no attempt lost');
  t.match(rows.forgotten, { status: 'Waiting for resources', lost_attempts: 1, agent: null }, 'a forgotten attempt is a lost one');
  t.match(rows.packaging, { status: 'Failed', agent: null }, 'Packaging past the deadline fails');
  t.match(rows.healthy, { status: 'Packaging', agent: 'a' }, 'the healthy run is untouched');
  t.same(await inv.check({ repair: false, judgeSilence: false }), [], 'nothing left');
});
