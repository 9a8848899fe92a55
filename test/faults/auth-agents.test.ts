// Issue 8, agents: every AgentLink call but Register needs the agent's own credential, and an agent may
// report only on attempts placed on it — a lease alone is worth nothing. Two scripted agents (real gRPC,
// real NATS, real scheduler): the second reports on the first's run with the first's lease and is refused,
// and the run is unchanged.
import t from 'tap';
import { createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent } from '../helpers/fake-agent.js';

const quick = 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n';
const codeOf = (e: unknown) => (e as { code?: number }).code;

t.test('an agent reports only on its own attempts, and only with its credential', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const one = await FakeAgent.start(s, 'one', { cpus: 4 });
  const two = await FakeAgent.start(s, 'two', { cpus: 1 });
  t.teardown(async () => { await one.close(); await two.close(); });

  t.match(one.credential, /^tya_/, 'Register with the join token issued a credential');
  const [row] = await s.query("SELECT * FROM agents WHERE name = 'one'");
  t.equal(row!.identity_sha256, createHash('sha256').update(one.credential).digest('hex'), 'the scheduler keeps its SHA-256');
  t.notOk(JSON.stringify(await s.query('SELECT * FROM agents')).includes(one.credential.slice(4)), 'and never the credential');

  const run = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd', '--cpus', '4']);
  const d = await one.nextDispatch();
  t.equal(d.run_id, run.id, 'the run is placed on the first agent');
  const snapshot = async () => ({
    run: (await s.query('SELECT status, agent, lease, attempt, acked_at IS NOT NULL AS acked, failure_reason FROM runs WHERE id = $1', [run.id]))[0],
    events: (await s.query('SELECT count(*)::int AS n FROM run_events WHERE run_id = $1', [run.id]))[0]!.n,
    logs: (await s.query('SELECT count(*)::int AS n FROM run_logs WHERE run_id = $1', [run.id]))[0]!.n,
  });
  const before = await snapshot();

  // The second agent, with its own valid credential and the first's lease.
  const rs = await two.call<{ stop: boolean }>('ReportStatus', { run_id: run.id, lease: d.lease, status: 'Packaging', detail: '' });
  t.equal(rs.stop, true, 'ReportStatus(Packaging) from the other agent: told to stop');
  await two.call('ReportStatus', { run_id: run.id, lease: d.lease, status: 'accepted', detail: '' });
  const logs = await two.call<{ acked_seq: number; stop: boolean }>('AppendLogs', {
    run_id: run.id, lease: d.lease, lines: [{ attempt: d.attempt, seq: 1, stream: 'stdout', text: 'forged line', at: '' }],
  });
  t.same([Number(logs.acked_seq), logs.stop], [0, true], 'AppendLogs from the other agent: nothing acknowledged');
  for (const outcome of ['failed', 'killed', 'handed_back', 'succeeded']) {
    const fin = await two.call('FinishAttempt', { run_id: run.id, lease: d.lease, outcome, reason: 'forged', package_sha256: 'a'.repeat(64) }).catch((e: unknown) => e);
    t.equal(codeOf(fin), status.ABORTED, `FinishAttempt(${outcome}) from the other agent is refused`);
  }
  const claim = await two.call('ClaimAttempt', { agent: 'one', run_id: run.id, attempt: d.attempt }).catch((e: unknown) => e);
  t.ok([status.NOT_FOUND, status.PERMISSION_DENIED].includes(codeOf(claim)!), 'ClaimAttempt naming the first agent in the request is refused: the caller is who its credential says');
  t.same(await snapshot(), before, 'the run is unchanged: same status, agent, lease; no event, no log line');

  // No credential, another agent's name, a client token: UNAUTHENTICATED, on every AgentLink call.
  const anon = {};
  for (const [method, req] of [
    ['Heartbeat', { name: 'one', session: one.session, held: [], draining: false, leaving: false }],
    ['ReportStatus', { run_id: run.id, lease: d.lease, status: 'Packaging', detail: '' }],
    ['AppendLogs', { run_id: run.id, lease: d.lease, lines: [] }],
    ['FinishAttempt', { run_id: run.id, lease: d.lease, outcome: 'failed', reason: 'anonymous' }],
    ['ClaimAttempt', { agent: 'one', run_id: run.id, attempt: d.attempt }],
  ] as const) {
    t.equal(codeOf(await one.call(method, req, { auth: anon }).catch((e: unknown) => e)), status.UNAUTHENTICATED, `${method} without a credential: UNAUTHENTICATED`);
  }
  const stolenName = { 'trainyard-agent': 'one', authorization: `Bearer ${two.credential}` };
  t.equal(codeOf(await two.call('ReportStatus', { run_id: run.id, lease: d.lease, status: 'Packaging', detail: '' }, { auth: stolenName }).catch((e: unknown) => e)),
    status.UNAUTHENTICATED, 'the second agent\'s credential under the first\'s name: UNAUTHENTICATED');
  const clientToken = { 'trainyard-agent': 'one', authorization: `Bearer ${s.adminToken}` };
  t.equal(codeOf(await one.call('Heartbeat', { name: 'one', session: one.session, held: [] }, { auth: clientToken }).catch((e: unknown) => e)),
    status.UNAUTHENTICATED, 'an admin client token is no agent credential');
  t.equal(codeOf(await two.call('Heartbeat', { name: 'one', session: one.session, held: [], draining: false, leaving: true }).catch((e: unknown) => e)),
    status.PERMISSION_DENIED, 'an agent cannot heartbeat (or leave) for another');
  t.same(await snapshot(), before, 'still unchanged');

  // Register under a live, credentialed name: without a credential, refused; with a new join token, refused.
  const reg = { name: 'one', hostname: 'intruder', cpus: 64, memory_mb: 1, labels: {}, version: 'x', held: [], gpus: [], identity: '' };
  t.equal(codeOf(await two.call('Register', reg, { auth: anon }).catch((e: unknown) => e)), status.UNAUTHENTICATED, 'Register with no credential and no join token: UNAUTHENTICATED');
  t.equal(codeOf(await two.call('Register', reg, { auth: { 'trainyard-agent': 'one' } }).catch((e: unknown) => e)), status.UNAUTHENTICATED, 'nor with a name alone');
  const join = (await s.cliJson(['agents', 'join-token', 'create', '--expires', '1h'])).token as string;
  const taken = await two.call('Register', reg, { auth: { authorization: `Bearer ${join}` } }).catch((e: unknown) => e);
  t.equal(codeOf(taken), status.ALREADY_EXISTS, 'a join token cannot take a name its live holder has a credential for');
  t.equal(codeOf(await two.call('Register', reg).catch((e: unknown) => e)), status.PERMISSION_DENIED, 'nor can another agent\'s credential');
  const [after] = await s.query("SELECT identity_sha256, session, hostname, cpus FROM agents WHERE name = 'one'");
  t.same(after, { identity_sha256: row!.identity_sha256, session: row!.session, hostname: 'fake', cpus: 4 }, 'the first agent\'s row is untouched');
  t.equal(codeOf(await two.call('Register', { ...reg, name: 'three' }, { auth: { authorization: `Bearer ${s.adminToken}` } }).catch((e: unknown) => e)),
    status.UNAUTHENTICATED, 'a client token cannot register an agent');
  await s.cli(['tokens', 'revoke', join.split('_')[1]!]);
  t.equal(codeOf(await two.call('Register', { ...reg, name: 'three' }, { auth: { authorization: `Bearer ${join}` } }).catch((e: unknown) => e)),
    status.UNAUTHENTICATED, 'a revoked join token joins nothing');

  // The agent that holds the attempt: accepted, and its reports move the run.
  t.equal((await one.call<{ stop: boolean }>('ReportStatus', { run_id: run.id, lease: d.lease, status: 'Packaging', detail: '' })).stop, false, 'the holder reports Packaging');
  t.equal(Number((await one.call<{ acked_seq: number }>('AppendLogs', { run_id: run.id, lease: d.lease, lines: [{ attempt: d.attempt, seq: 1, stream: 'stdout', text: 'real line', at: '' }] })).acked_seq), 1, 'and its log lines');
  // A batch racing the run's end: the end's transaction holds the run's row when the batch comes, and
  // commits after the batch was read as live. The batch's statement waits for it, then stores nothing.
  const ending = await s.pool.connect();
  const [was] = await s.query<{ status: string }>('SELECT status FROM runs WHERE id = $1', [run.id]);
  try {
    await ending.query('BEGIN');
    await ending.query("UPDATE runs SET status = 'Failed', failure_reason = 'ended meanwhile', ended_at = now() WHERE id = $1", [run.id]);
    const racing = one.call<{ acked_seq: number; stop: boolean }>('AppendLogs', { run_id: run.id, lease: d.lease, lines: [{ attempt: d.attempt, seq: 2, stream: 'stdout', text: 'raced', at: '' }] });
    const deadline = Date.now() + 20_000;
    // Wait until the batch's statement is waiting on the row lock (it read the run as live before).
    while ((await s.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO run_logs%'")).length === 0) {
      if (Date.now() > deadline) throw new Error('the batch never waited for the end');
      await new Promise((r) => setTimeout(r, 20));
    }
    await ending.query('ROLLBACK');
    t.equal((await racing).stop, false, 'rolled back: the run lives, and the batch goes in once the lock is free');
    await ending.query('BEGIN');
    await ending.query("UPDATE runs SET status = 'Failed', failure_reason = 'ended meanwhile', ended_at = now() WHERE id = $1", [run.id]);
    const racing2 = one.call<{ acked_seq: number; stop: boolean }>('AppendLogs', { run_id: run.id, lease: d.lease, lines: [{ attempt: d.attempt, seq: 3, stream: 'stdout', text: 'raced late', at: '' }] });
    while ((await s.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO run_logs%'")).length === 0) {
      if (Date.now() > deadline) throw new Error('the batch never waited for the end');
      await new Promise((r) => setTimeout(r, 20));
    }
    await ending.query('COMMIT');
    t.equal((await racing2).stop, true, 'committed first: the batch is told to stop');
    t.same((await s.query('SELECT text FROM run_logs WHERE run_id = $1 ORDER BY seq', [run.id])).map((r) => r.text), ['real line', 'raced'], 'and its line was not stored after the end');
    // Back as it was, for the end below (this test's own rewind, not something the product does).
    await ending.query('UPDATE runs SET status = $2, failure_reason = NULL, ended_at = NULL WHERE id = $1', [run.id, was!.status]);
  } finally {
    ending.release();
  }
  await one.call('FinishAttempt', { run_id: run.id, lease: d.lease, outcome: 'failed', reason: 'done here' });
  t.match((await s.query('SELECT status, failure_reason FROM runs WHERE id = $1', [run.id]))[0], { status: 'Failed', failure_reason: 'done here' }, 'and its end');
  // No appends for ended runs, even from the agent that held it, with its lease.
  const late = await one.call<{ acked_seq: number; stop: boolean }>('AppendLogs', { run_id: run.id, lease: d.lease, lines: [{ attempt: d.attempt, seq: 2, stream: 'stdout', text: 'late', at: '' }] });
  t.equal(late.stop, true, 'a line for an ended run is refused');
  t.same((await s.query('SELECT text FROM run_logs WHERE run_id = $1 ORDER BY seq', [run.id])).map((r) => r.text), ['real line', 'raced'], 'the ended run\'s log holds only the holder\'s lines from while it lived');
});
