// Issue 9, the ML log (`trainyard events`): packages pushed or refused, datasets pushed, every step of a
// run, agents joining, draining, leaving and lost; who sees which; --kind, --since, --follow (within the
// per-token stream cap); retention. Real scheduler, agents and CLI.
import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Stack, root, tempDir, testDatabase, writeTree } from '../helpers/stack.js';
import { gatedTrainPy, quickTrainPy as quick, until, waitForAttempt, failingTrainPy as failing } from '../helpers/packages.js';
import { eventKinds } from '../../shared/event-kinds.js';
import { parseSince } from '../../cli/commands/events.js';

interface Ev { id: number; at: string; kind: string; project: string; subject: string; detail: string; data: Record<string, unknown> }


t.test('the kinds in shared/event-kinds.ts are the CHECK on events.kind', async (t) => {
  const { db } = await testDatabase(t);
  const { rows } = await (await import('kysely')).sql<{ def: string }>`
    SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c WHERE c.conrelid = 'events'::regclass AND c.contype = 'c'`.execute(db);
  const inSql = [...(rows[0]?.def ?? '').matchAll(/'([a-z_.]+)'/g)].map((m) => m[1]).sort();
  t.same(inSql, [...eventKinds].sort(), 'the same list');
});

t.test('--since takes RFC 3339 and a time ago', async (t) => {
  const now = Date.parse('2025-01-31T12:00:00Z');
  t.equal(parseSince('30m', now), '2025-01-31T11:30:00.000Z');
  t.equal(parseSince('2d', now), '2025-01-29T12:00:00.000Z');
  t.equal(parseSince('2025-01-31T13:00:00+01:00', now), '2025-01-31T12:00:00.000Z');
  t.throws(() => parseSince('yesterday', now), /--since "yesterday": expected an RFC 3339 time/);
});

t.test('the ML log: what happened, to whom it shows, follow and retention', async (t) => {
  const s = await Stack.create(t, { schedulerEnv: { TRAINYARD_MAX_STREAMS_PER_TOKEN: '1' } });
  const token = async (project: string, role: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  const a = await token('alpha', 'member');
  const ar = await token('alpha', 'reader');
  const b = await token('beta', 'member');
  const as = (tok: string) => async (args: string[]) => {
    const r = await s.cli([...args, '--json', '--token', tok]);
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : null, err: r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null, stderr: r.stderr };
  };
  const A = as(a);
  const B = as(b);
  const R = as(ar);
  const ok = async (r: Promise<{ code: number; stderr: string; out: any }>) => { const x = await r; if (x.code !== 0) throw new Error(x.stderr); return x.out; };

  // Alpha: a package, a refused push, a dataset, a run that succeeds, one that fails, one killed.
  await ok(A(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'pa']));
  const refused = await A(['package', 'push', writeTree(tempDir(), { 'other.py': 'x = 1\n' }), '--name', 'pa']);
  t.equal(refused.code, 2, 'a push without train.py is refused');
  await ok(A(['package', 'push', writeTree(tempDir(), { 'train.py': failing }), '--name', 'pfail']));
  await ok(A(['package', 'push', writeTree(tempDir(), { 'train.py': gatedTrainPy }), '--name', 'pgated']));
  await ok(A(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'da']));
  const good = await ok(A(['run', 'train', '--package', 'pa', '--dataset', 'da', '--wait']));
  t.equal(good.status, 'Successful');
  const bad = await A(['run', 'train', '--package', 'pfail', '--dataset', 'da', '--wait']);
  t.equal(bad.code, 1, 'a failed run exits 1 (--wait)');
  const failedRun = (await s.query("SELECT id FROM runs WHERE package = 'pfail'"))[0]!.id as string;
  await s.waitForStatus(failedRun, ['Failed']);
  const gated = await ok(A(['run', 'train', '--package', 'pgated', '--dataset', 'da', '--env', `GATE=${path.join(tempDir(), 'never')}`]));
  await waitForAttempt(s, gated.id, 1);
  await ok(A(['run', 'kill', gated.id]));
  await s.waitForStatus(gated.id, ['Killed']);
  // Beta: a package of its own.
  await ok(B(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'pb']));
  // The fleet: one agent drains and leaves, one is lost.
  const leaving = await s.startAgent('leaving');
  await s.cliJson(['agents', 'drain', 'leaving']);
  t.equal(await leaving.exited, 0, 'the drained agent exits');
  const doomed = await s.startAgent('doomed');
  await doomed.kill9();
  await until('agent.lost', async () => (await s.query("SELECT 1 FROM events WHERE kind = 'agent.lost' AND subject = 'doomed'")).length > 0);

  const mine: Ev[] = await ok(A(['events', '--limit', '1000']));
  t.ok(mine.length > 0 && mine.every((e) => e.project === 'alpha'), 'a member sees its project\'s events only');
  const kindsOf = (evs: Ev[], subject: string) => evs.filter((e) => e.subject === subject).map((e) => e.kind);
  t.same(kindsOf(mine, 'pa'), ['package.pushed', 'package.refused'], 'package pushed, then refused');
  t.match(mine.find((e) => e.kind === 'package.refused'), { detail: /has no train\.py/, data: { code: 'INVALID_PACKAGE' } }, 'with the reason');
  t.match(mine.find((e) => e.kind === 'package.pushed' && e.subject === 'pa'), { detail: 'version 1.0', data: { version: '1.0' } });
  t.match(mine.find((e) => e.kind === 'dataset.pushed'), { subject: 'da', data: { files: 1 } }, 'dataset pushed');
  t.same(kindsOf(mine, good.id), ['run.submitted', 'run.placed', 'run.packaging', 'run.started', 'run.succeeded'], 'a run\'s life, in order');
  t.match(mine.find((e) => e.subject === good.id && e.kind === 'run.succeeded'), { detail: 'registered version 1.1', data: { output_version: '1.1', package: 'pa' } },
    'succeeded with its new version (written by the statement that registered it)');
  t.match(mine.find((e) => e.subject === failedRun && e.kind === 'run.failed'), { detail: /ValueError: bad data/ }, 'failed, with the reason');
  t.same(kindsOf(mine, gated.id).slice(-2), ['run.kill_requested', 'run.killed'], 'killed');
  t.notOk(mine.some((e) => e.kind.startsWith('agent.') || e.subject === 'pb'), 'no agent events, nothing of beta');
  t.same((await ok(R(['events', '--limit', '1000']))).map((e: Ev) => e.id), mine.map((e) => e.id), 'a reader of alpha sees the same');
  const theirs: Ev[] = await ok(B(['events', '--limit', '1000']));
  t.same(theirs.map((e) => `${e.kind} ${e.subject}`), ['package.pushed pb'], 'beta sees only its own');
  const peek = await B(['events', '--project', 'alpha']);
  t.equal(peek.err?.code, 'PERMISSION_DENIED', 'beta cannot ask for alpha\'s');
  t.match(peek.err?.message, /project "alpha"/);

  const fleet: Ev[] = await s.cliJson(['events', '--kind', 'agent', '--limit', '1000']);
  t.ok(fleet.every((e) => e.project === ''), 'agent events belong to no project');
  t.same(fleet.filter((e) => e.subject === 'leaving').map((e) => e.kind), ['agent.joined', 'agent.draining', 'agent.drained'], 'an admin sees an agent join, drain and leave');
  t.same(fleet.filter((e) => e.subject === 'doomed').map((e) => e.kind), ['agent.joined', 'agent.lost'], 'and one lost');
  t.ok(fleet.some((e) => e.subject === 'agent1' && e.kind === 'agent.joined'), 'the stack\'s agent joined');
  t.equal((await s.cliJson<Ev[]>(['events', '--limit', '1000'])).filter((e) => e.project === 'beta').length, 1, 'an admin sees every project');

  const failedOnly: Ev[] = await ok(A(['events', '--kind', 'run.failed']));
  t.same(failedOnly.map((e) => e.subject), [failedRun], '--kind picks one kind');
  t.ok((await ok(A(['events', '--kind', 'run', '--limit', '1000']))).every((e: Ev) => e.kind.startsWith('run.')), '--kind run picks the group');
  const bogus = await A(['events', '--kind', 'run.exploded']);
  t.equal(bogus.code, 2, 'an unknown kind is bad input');
  t.match(bogus.err?.message, /kind "run\.exploded" is not an event kind/);
  t.equal((await ok(A(['events', '--since', '1h', '--limit', '1000']))).length, mine.length, '--since 1h: everything of this test');
  t.same(await ok(A(['events', '--since', '2099-01-01T00:00:00Z'])), [], '--since in the future: nothing');
  t.same((await ok(A(['events', '--limit', '2']))).map((e: Ev) => e.id), mine.slice(-2).map((e) => e.id), '--limit N: the last N, oldest first');

  // --follow: the events so far, then new ones as they commit; it holds the reader's one stream.
  const child = spawn(process.execPath, [path.join(root, 'bin', 'trainyard.js'), 'events', '--follow', '--json', '--kind', 'dataset', '--token', ar, '--scheduler', s.schedulerAddress],
    { env: s.env(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const followed = () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Ev);
  await until('the follower\'s first events', async () => followed().some((e) => e.subject === 'da'), 30_000);
  const second = await R(['events', '--follow']);
  t.equal(second.err?.code, 'RESOURCE_EXHAUSTED', 'a second follow with the same token is over the per-token stream cap');
  await ok(A(['dataset', 'push', writeTree(tempDir(), { 'y.csv': '2\n' }), '--name', 'da2']));
  await until('the follower to see the new push', async () => followed().some((e) => e.subject === 'da2'), 30_000);
  t.same(followed().map((e) => e.subject), ['da', 'da2'], 'each event once, in order, only the kind asked for');
  child.kill('SIGINT');
  await exited;

  // Retention: events older than --events-retention-days (30) go when a scheduler starts leading; nothing else does.
  await s.query(`INSERT INTO events (at, kind, project, subject) VALUES
    (now() - interval '31 days', 'dataset.pushed', 'alpha', 'too-old'), (now() - interval '29 days', 'dataset.pushed', 'alpha', 'kept')`);
  const runEvents = (await s.query('SELECT count(*)::int AS n FROM run_events'))[0]!.n;
  // The webhook delivery log goes in the same pass (--webhook-log-retention-days, 30): finished and old only.
  await s.query(`INSERT INTO webhooks (id, name, project, url, events, format, secret)
    VALUES ('wh_retention', 'retention', 'alpha', 'https://hooks.example/x', '{run.failed}', 'json', 'sixteen-chars-secret')`);
  await s.query(`INSERT INTO webhook_deliveries (id, webhook_id, kind, subject, state, created_at) VALUES
    ('dlv_too_old', 'wh_retention', 'run.failed', 'r', 'delivered', now() - interval '31 days'),
    ('dlv_kept', 'wh_retention', 'run.failed', 'r', 'delivered', now() - interval '29 days')`);
  await s.daemons.find((d) => d.name === 'scheduler1')!.stop();
  const restarted = await s.startScheduler({ TRAINYARD_MAX_STREAMS_PER_TOKEN: '1' }, s.schedulerAddress);
  await restarted.waitFor((l) => l.msg === 'events pruned');
  t.same((await s.query("SELECT subject FROM events WHERE subject IN ('too-old', 'kept')")).map((r) => r.subject), ['kept'], 'the 31-day-old event is pruned, the 29-day-old one kept');
  t.same((await s.query("SELECT id FROM webhook_deliveries WHERE webhook_id = 'wh_retention'")).map((r) => r.id), ['dlv_kept'], 'the 31-day-old webhook delivery is pruned by the leader, the 29-day-old one kept');
  t.equal((await s.query('SELECT count(*)::int AS n FROM run_events'))[0]!.n, runEvents, 'run history is not pruned');
  t.ok((await s.query(`SELECT 1 FROM events WHERE subject = $1`, [good.id])).length > 0, 'recent events stay');
});
