// Issue 9, schedules: a run submitted on a cron or once, exactly once per firing with two schedulers,
// once (not once per firing) after downtime, a firing whose package or dataset is gone fails and the
// schedule goes on, bad input refused naming the field, and projects' rules. Real schedulers and CLI.
//
// The exactly-once test uses a 6-field cron (seconds first), `*/2 * * * * *`: a firing every 2 s gives
// ten races between the two schedulers in 20 s, where `* * * * *` would give three in three minutes.
// What is proven is per firing (both schedulers wake on the same whole second and try to claim it), so
// more firings prove more; the minute field is only a different period of the same code.
import t from 'tap';
import { Cron } from 'croner';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { quickTrainPy as quick, until } from '../helpers/packages.js';
import { storedRequest } from '../../scheduler/schedules/request.js';
import type { SubmitRunRequest__Output } from '../../shared/proto.js';


async function pushBoth(s: Stack, pkg = 'p', ds = 'd', token?: string): Promise<void> {
  const as = token ? ['--token', token] : [];
  for (const args of [['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', pkg], ['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', ds]]) {
    const r = await s.cli([...args, ...as]);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  }
}


const runsOf = (s: Stack, name: string) => s.query<{ id: string; schedule_fire_at: Date }>('SELECT id, schedule_fire_at FROM runs WHERE schedule = $1 ORDER BY schedule_fire_at', [name]);
const scheduleRow = async (s: Stack, name: string) => (await s.query('SELECT * FROM schedules WHERE name = $1', [name]))[0]!;
const eventsOf = (s: Stack, name: string, kind: string) => s.query('SELECT * FROM events WHERE subject = $1 AND kind = $2 ORDER BY id', [name, kind]);

t.test('two schedulers: each firing makes exactly one run', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await s.startScheduler();
  await pushBoth(s);
  const created = await s.cliJson(['schedules', 'create', 'every2s', '--cron', '*/2 * * * * *', '--', 'run', 'train', '--package', 'p', '--dataset', 'd', '--priority', '3']);
  t.match(created, { name: 'every2s', state: 'active', project: 'default', cron: '*/2 * * * * *', timezone: 'UTC' }, 'created, in the token\'s project, UTC by default');
  t.match(created.run, { package: 'p', dataset: 'd', priority: 3, idempotency_key: '' }, 'it keeps the request it submits');

  await until('ten firings', async () => (await runsOf(s, 'every2s')).length >= 10);
  t.equal((await s.cli(['schedules', 'pause', 'every2s'])).code, 0, 'paused');
  const runs = await runsOf(s, 'every2s');
  const times = runs.map((r) => r.schedule_fire_at.getTime());
  t.equal(new Set(times).size, runs.length, `no firing made two runs (${runs.length} runs, all at distinct firings)`);
  t.ok(times.every((ms) => ms % 2000 === 0), 'each run stands for a firing of the cron (an even second)');
  const row = await scheduleRow(s, 'every2s');
  t.equal(row.fired_count, runs.length, 'the schedule counted one firing per run');
  t.equal(row.failed_count, 0);
  // Every firing between the first and the last is either a run or counted missed (none lost, none twice).
  const missedAfterFirst = (await eventsOf(s, 'every2s', 'schedule.missed'))
    .filter((e) => new Date(e.data.fire_at).getTime() > times[0]!).reduce((n, e) => n + Number(e.data.missed), 0);
  t.equal((times.at(-1)! - times[0]!) / 2000 + 1, runs.length + missedAfterFirst, 'every firing in the span is accounted for once');
  t.equal((await eventsOf(s, 'every2s', 'schedule.fired')).length, runs.length, 'one schedule.fired event per run');
  const fired = (name: string) => s.logOf(name).split('\n').filter((l) => l.includes('"msg":"schedule fired"')).length;
  t.equal(fired('scheduler1') + fired('scheduler2'), runs.length, 'the two schedulers logged one firing per run between them');
  t.comment(`scheduler1 fired ${fired('scheduler1')}, scheduler2 fired ${fired('scheduler2')}`);
  const submitted = await s.query("SELECT count(*)::int AS n FROM runs r JOIN run_events e ON e.run_id = r.id WHERE r.schedule = 'every2s' AND e.detail = 'submitted'");
  t.equal(submitted[0]!.n, runs.length, 'each run was submitted once, through submit');
  const prio = await s.query("SELECT DISTINCT priority, project FROM runs WHERE schedule = 'every2s'");
  t.same(prio, [{ priority: 3, project: 'default' }], 'with the stored request');

  const listed = await s.cliJson<{ id: string; schedule: string }[]>(['run', 'list', '--schedule', 'every2s', '--limit', '1000']);
  t.same(listed.map((r) => r.id).sort(), runs.map((r) => r.id).sort(), 'run list --schedule shows exactly its runs');
  const after = (await runsOf(s, 'every2s')).length;
  const paused = await s.cliJson(['schedules', 'get', 'every2s']);
  t.equal(paused.state, 'paused');
  t.equal(after, runs.length, 'a paused schedule fires nothing');
});

t.test('after downtime: one run for the firings it missed, and schedules get says so', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await pushBoth(s);
  // Three firings 12, 14 and 16 s from now, in this minute (so one cron holds them all), then none for a year.
  if (new Date().getUTCSeconds() > 40) await new Promise((r) => setTimeout(r, (61 - new Date().getUTCSeconds()) * 1000));
  const base = Math.ceil(Date.now() / 1000) * 1000;
  const fires = [12_000, 14_000, 16_000].map((d) => new Date(base + d));
  const f0 = fires[0]!;
  if (new Set(fires.map((f) => f.getUTCMinutes())).size !== 1) throw new Error('test setup: the firings must share a minute');
  const cron = `${fires.map((f) => f.getUTCSeconds()).join(',')} ${f0.getUTCMinutes()} ${f0.getUTCHours()} ${f0.getUTCDate()} ${f0.getUTCMonth() + 1} *`;
  const created = await s.cliJson(['schedules', 'create', 'downtime', '--cron', cron, '--timezone', 'UTC', '--', 'run', 'train', '--package', 'p', '--dataset', 'd']);
  t.equal(created.next_fire_at, f0.toISOString(), 'the first firing is the first of the three');

  const scheduler = s.daemons.find((d) => d.name === 'scheduler1')!;
  await scheduler.stop();
  t.ok(Date.now() < f0.getTime(), 'the only scheduler stopped before the first firing');
  await until('the three firings to pass', async () => Date.now() > fires[2]!.getTime() + 500, 60_000);
  t.same(await runsOf(s, 'downtime'), [], 'nothing fired while no scheduler ran');

  await s.startScheduler({}, s.schedulerAddress);
  const [run] = await until('the catch-up firing', async () => { const r = await runsOf(s, 'downtime'); return r.length ? r : null; });
  const row = await scheduleRow(s, 'downtime');
  t.equal(row.fired_count, 1, 'one firing');
  t.equal(row.missed_total, 2, 'the two firings before it counted missed');
  t.equal(row.last_missed, 2);
  t.equal(run!.schedule_fire_at.toISOString(), fires[2]!.toISOString(), 'the run stands for the latest firing');
  t.equal(new Date(row.next_fire_at).getUTCFullYear(), f0.getUTCFullYear() + 1, 'the next firing is a year on');
  t.equal((await runsOf(s, 'downtime')).length, 1, 'exactly one run for three firings');
  const missed = await eventsOf(s, 'downtime', 'schedule.missed');
  t.equal(missed.length, 1, 'one schedule.missed event');
  t.match(missed[0]?.data, { missed: 2, from: f0.toISOString() });
  const got = await s.cli(['schedules', 'get', 'downtime']);
  t.match(got.stdout, /missed +2 firing\(s\) passed while no scheduler ran; the catch-up at .* fired once for them \(2 missed in all\)/, 'schedules get says so');
  const json = await s.cliJson(['schedules', 'get', 'downtime']);
  t.match(json, { missed_total: 2, last_missed: 2, fired: 1, last_run_id: run!.id });
});

t.test('a firing whose dataset or package is gone fails with the reason; the schedule goes on', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await pushBoth(s);
  await s.cliJson(['schedules', 'create', 'fragile', '--cron', '*/2 * * * * *', '--', 'run', 'train', '--package', 'p', '--dataset', 'd']);
  await until('a first run', async () => (await runsOf(s, 'fragile')).length >= 1);

  // No verb removes a dataset or a package yet: they go by hand, as an operator would.
  await s.query("DELETE FROM datasets WHERE name = 'd'");
  const failed = await until('a refused firing', async () => (await eventsOf(s, 'fragile', 'schedule.failed'))[0]);
  t.match(failed.detail, /dataset "d" not found/, 'the event gives the reason');
  t.match(await scheduleRow(s, 'fragile'), { state: 'active', last_error: /dataset "d" not found/ }, 'the schedule stays active, with the reason');
  const runsThen = (await runsOf(s, 'fragile')).length;

  await pushBoth(s); // the dataset is back
  await until('a run after the failure', async () => (await runsOf(s, 'fragile')).length > runsThen);
  t.pass('the next firing made a run again');
  t.equal((await scheduleRow(s, 'fragile')).last_error, '', 'a firing that ran clears the last error');

  await s.query("DELETE FROM package_versions WHERE package = 'p'");
  await s.query("DELETE FROM packages WHERE name = 'p'");
  const gone = await until('a firing refused for the package', async () => (await eventsOf(s, 'fragile', 'schedule.failed')).find((e) => /package "p" not found/.test(e.detail)));
  t.ok(gone, 'schedule.failed names the package');
  t.equal((await s.cli(['schedules', 'pause', 'fragile'])).code, 0);
  const row = await scheduleRow(s, 'fragile');
  t.ok(row.failed_count >= 2, `refused firings are counted (${row.failed_count})`);
  t.ok(row.fired_count >= 2, `and so are the ones that ran (${row.fired_count})`);
  const now = await s.cli(['schedules', 'run-now', 'fragile', '--json']);
  t.equal(now.code, 1, 'run-now with the package gone fails');
  t.match(JSON.parse(now.stderr).error, { code: 'NOT_FOUND', message: /schedule "fragile" did not fire: package "p" not found/ });
  t.match((await eventsOf(s, 'fragile', 'schedule.failed')).at(-1)?.detail, /\(run-now\)$/, 'and is logged as a refused firing');
});

t.test('bad input is refused naming the field, and creates nothing', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await pushBoth(s);
  const run = ['--', 'run', 'train', '--package', 'p', '--dataset', 'd'];
  const cases: [string, string[], number, RegExp][] = [
    ['an invalid cron expression', ['--cron', '61 * * * *', ...run], 2, /cron "61 \* \* \* \*" is invalid: .*minute/],
    ['a cron of 3 fields', ['--cron', '* * *', ...run], 2, /cron "\* \* \*" must have 5 fields/],
    ['an unknown time zone', ['--cron', '0 3 * * *', '--timezone', 'Mars/Olympus', ...run], 2, /timezone "Mars\/Olympus" is not a known IANA time zone/],
    ['--at in the past', ['--at', '2020-01-01T00:00:00Z', ...run], 2, /at 2020-01-01T00:00:00Z is in the past/],
    ['--at that is not RFC 3339', ['--at', 'tomorrow', ...run], 2, /at "tomorrow" is not an RFC 3339 time/],
    ['both --cron and --at', ['--cron', '0 3 * * *', '--at', '2099-01-01T00:00:00Z', ...run], 2, /either cron .* or at .*, not both/],
    ['an unknown package', ['--cron', '0 3 * * *', '--', 'run', 'train', '--package', 'nope', '--dataset', 'd'], 1, /package "nope" not found/],
    ['an unknown dataset', ['--cron', '0 3 * * *', '--', 'run', 'train', '--package', 'p', '--dataset', 'nope'], 1, /dataset "nope" not found/],
    ['an unknown version', ['--cron', '0 3 * * *', '--', 'run', 'train', '--package', 'p', '--version', '7.0', '--dataset', 'd'], 1, /package "p" has no version 7\.0/],
    ['a bad env name', ['--cron', '0 3 * * *', '--', 'run', 'train', '--package', 'p', '--dataset', 'd', '--env', '1X=y'], 2, /environment variable name "1X" is invalid/],
    ['--wait', ['--cron', '0 3 * * *', ...run, '--wait'], 2, /--wait: a schedule's runs are not waited for/],
    ['--idempotency-key', ['--cron', '0 3 * * *', ...run, '--idempotency-key', 'k'], 2, /--idempotency-key: a schedule makes one run per firing/],
    ['no run after --', ['--cron', '0 3 * * *'], 2, /say what to submit after "--"/],
    ['a pipeline this build does not know', ['--cron', '0 3 * * *', '--', 'run', 'dance', '--package', 'p', '--dataset', 'd'], 2, /"run dance" is not a pipeline/],
    ['a bad schedule name', ['--cron', '0 3 * * *', ...run], 2, /schedule name "bad name!" is invalid/],
  ];
  for (const [what, args, code, message] of cases) {
    const name = what === 'a bad schedule name' ? 'bad name!' : 'bad';
    const r = await s.cli(['schedules', 'create', name, ...args]);
    t.equal(r.code, code, `${what}: exit ${code}`);
    t.match(r.stderr, message, `${what}: says which field`);
  }
  t.same(await s.query('SELECT name FROM schedules'), [], 'no schedule was created');
  t.same(await s.query('SELECT id FROM runs'), [], 'the checks that submit makes left no run behind');
  t.same(await s.query("SELECT kind FROM events WHERE kind LIKE 'schedule.%' OR kind LIKE 'run.%'"), [], 'and no event');

  // Secrets and idempotency keys never get into a stored request (the proto's secrets field may be newer
  // than this client, so the check is on the stored form the scheduler makes).
  const req = { package: 'p', dataset: 'd', env: {}, idempotency_key: '', secrets: { TOKEN: 'x' } } as unknown as SubmitRunRequest__Output;
  t.throws(() => storedRequest(req, 'default'), /secrets are not stored in schedules/, 'a request with secrets is refused');
  t.throws(() => storedRequest({ ...req, secrets: {}, idempotency_key: 'k' } as SubmitRunRequest__Output, 'default'), /idempotency_key/, 'one with an idempotency key too');
  t.notOk('secrets' in storedRequest({ ...req, secrets: {} } as SubmitRunRequest__Output, 'default'), 'no secrets key is stored');

  // A good one-shot, once the bad ones are gone: it fires once and is done.
  const at = new Date(Math.ceil(Date.now() / 1000) * 1000 + 3000).toISOString();
  const once = await s.cliJson(['schedules', 'create', 'once', '--at', at, ...run]);
  t.match(once, { state: 'active', at, next_fire_at: at, cron: '' }, 'a one-shot');
  await until('the one-shot to fire', async () => (await scheduleRow(s, 'once')).state === 'done');
  t.equal((await runsOf(s, 'once')).length, 1, 'it made one run');
  const resume = await s.cli(['schedules', 'resume', 'once']);
  t.equal(resume.code, 1, 'a fired one-shot cannot be resumed');
  t.match(resume.stderr, /has fired \(a one-shot, --at\); create another/);
  t.ok(new Cron('*/2 * * * * *').nextRun(), 'croner is the cron library the scheduler uses');
});

t.test('projects: members manage their schedules, readers read them, other projects see nothing', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const token = async (project: string, role: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  const a = await token('alpha', 'member');
  const ar = await token('alpha', 'reader');
  const b = await token('beta', 'member');
  await pushBoth(s, 'pa', 'da', a);
  await pushBoth(s, 'pb', 'db', b);
  const as = (tok: string) => async (args: string[]) => {
    const r = await s.cli([...args, '--json', '--token', tok]);
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : null, err: r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null };
  };
  const A = as(a);
  const R = as(ar);
  const B = as(b);
  const runA = ['--', 'run', 'train', '--package', 'pa', '--dataset', 'da'];

  t.match((await A(['schedules', 'create', 'a-nightly', '--cron', '0 3 * * *', ...runA])).out, { name: 'a-nightly', project: 'alpha' }, 'a member creates one in its project');
  const readerCreate = await R(['schedules', 'create', 'r-nightly', '--cron', '0 3 * * *', ...runA]);
  t.equal(readerCreate.err?.code, 'PERMISSION_DENIED', 'a reader cannot create');
  t.match(readerCreate.err?.message, /reader token only reads/);
  for (const verb of ['pause', 'resume', 'delete', 'run-now']) {
    t.equal((await R(['schedules', verb, 'a-nightly'])).err?.code, 'PERMISSION_DENIED', `a reader cannot ${verb}`);
  }
  t.equal((await R(['schedules', 'get', 'a-nightly'])).out?.name, 'a-nightly', 'a reader reads it');
  t.same((await R(['schedules', 'list'])).out.map((x: { name: string }) => x.name), ['a-nightly'], 'and lists it');

  // Issue 19: to beta, alpha's schedule is one that does not exist (on main: PERMISSION_DENIED naming alpha).
  for (const verb of ['get', 'pause', 'resume', 'delete', 'run-now']) {
    const r = await B(['schedules', verb, 'a-nightly']);
    const missing = await B(['schedules', verb, 'no-such-schedule']);
    t.equal(r.err?.code, 'NOT_FOUND', `project beta cannot ${verb} alpha's schedule: not found`);
    t.equal(r.err?.message, String(missing.err?.message).replaceAll('no-such-schedule', 'a-nightly'), 'the same message as a missing one');
  }
  t.same((await B(['schedules', 'list'])).out, [], 'beta lists none of alpha\'s');
  t.equal((await B(['schedules', 'create', 'b-x', '--cron', '0 3 * * *', '--', 'run', 'train', '--package', 'pb', '--dataset', 'db', '--project', 'alpha'])).err?.code,
    'PERMISSION_DENIED', 'beta cannot create one in alpha');
  const withA = await B(['schedules', 'create', 'b-x', '--cron', '0 3 * * *', ...runA]);
  t.equal(withA.err?.code, 'NOT_FOUND', 'nor fire alpha\'s package: not found');
  t.notMatch(withA.err?.message, /alpha/, 'not naming alpha');
  // Names are per project: beta may name a schedule as alpha did, and alpha's is untouched.
  const mine = await B(['schedules', 'create', 'a-nightly', '--cron', '0 4 * * *', '--', 'run', 'train', '--package', 'pb', '--dataset', 'db']);
  t.match(mine.out, { name: 'a-nightly', project: 'beta' }, 'beta creates its own schedule of the same name');
  t.match((await B(['schedules', 'get', 'a-nightly'])).out, { project: 'beta', cron: '0 4 * * *' }, 'beta\'s name is beta\'s');
  t.match((await A(['schedules', 'get', 'a-nightly'])).out, { project: 'alpha', cron: '0 3 * * *' }, 'alpha\'s is alpha\'s, as it was');
  const again = await B(['schedules', 'create', 'a-nightly', '--cron', '0 5 * * *', '--', 'run', 'train', '--package', 'pb', '--dataset', 'db']);
  t.equal(again.err?.code, 'ALREADY_EXISTS', 'within a project a name is one schedule');
  const ambiguous = await as(s.adminToken)(['schedules', 'get', 'a-nightly']);
  t.equal(ambiguous.err?.code, 'INVALID_ARGUMENT', 'an admin naming a name two projects use is asked which');
  t.match(ambiguous.err?.message, /PROJECT\/a-nightly/);
  t.match((await as(s.adminToken)(['schedules', 'get', 'alpha/a-nightly'])).out, { project: 'alpha' }, 'PROJECT/NAME picks one');
  t.match((await as(s.adminToken)(['schedules', 'delete', 'beta/a-nightly'])).out, { project: 'beta' }, 'an admin deletes beta\'s by PROJECT/NAME');

  const before = await scheduleRow(s, 'a-nightly');
  t.equal(before.state, 'active', 'nothing beta or the reader asked changed it');
  t.equal(before.project, 'alpha');
  t.match((await A(['schedules', 'pause', 'a-nightly'])).out, { state: 'paused' }, 'the member pauses it');
  t.match((await A(['schedules', 'resume', 'a-nightly'])).out, { state: 'active' }, 'and resumes it');
  const now = await A(['schedules', 'run-now', 'a-nightly']);
  t.match(now.out, { project: 'alpha', schedule: 'a-nightly', package: 'pa' }, 'run-now fires a run in alpha');
  t.same((await A(['run', 'list', '--schedule', 'a-nightly'])).out.map((r: { id: string }) => r.id), [now.out.id], 'run list --schedule finds it');
  t.same((await B(['run', 'list', '--schedule', 'a-nightly'])).out, [], 'beta does not');
  t.equal((await s.cliJson<unknown[]>(['schedules', 'list'])).length, 1, 'an admin lists every project\'s');
  t.match((await A(['schedules', 'delete', 'a-nightly'])).out, { name: 'a-nightly' }, 'the member deletes it');
  t.same(await s.query('SELECT name FROM schedules'), [], 'it is gone');
  t.same((await A(['run', 'list', '--schedule', 'a-nightly'])).out.map((r: { id: string }) => r.id), [now.out.id], 'its runs keep its name');
  const kinds = (await s.query("SELECT kind FROM events WHERE subject = 'a-nightly' AND project = 'alpha' ORDER BY id")).map((e) => e.kind);
  t.same(kinds, ['schedule.created', 'schedule.paused', 'schedule.resumed', 'schedule.fired', 'schedule.deleted'], 'each change is in the ML log once');
});

t.test('evaluation and full pipelines on a schedule: each firing is a run of that kind with its datasets', async (t) => {
  const s = await Stack.create(t);
  const scorer = 'class Main:\n    def train(self, d):\n        pass\n    def evaluate(self, d):\n        return 0.5\n    def save(self):\n        open("model.txt", "w").write("m")\n';
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': scorer }), '--name', 'sc']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n', 'holdout/h.csv': '2\n' }), '--name', 'd']);
  await s.cliJson(['schedules', 'create', 'weekly-full', '--cron', '0 4 * * 1', '--', 'run', 'full', '--package', 'sc', '--dataset', 'd', '--eval-dataset', 'd/holdout']);
  await s.cliJson(['schedules', 'create', 'weekly-eval', '--cron', '0 5 * * 1', '--timezone', 'Europe/Paris', '--', 'run', 'evaluate', '--package', 'sc', '--version', '1.0', '--dataset', 'd/holdout']);
  const got = await s.cliJson(['schedules', 'get', 'weekly-eval']);
  t.match(got, { timezone: 'Europe/Paris' }, 'the schedule keeps its time zone');
  const full = await s.cliJson(['schedules', 'run-now', 'weekly-full']);
  const evaluation = await s.cliJson(['schedules', 'run-now', 'weekly-eval']);
  const f = await s.waitForStatus(String(full.id), ['Successful', 'Failed', 'Killed']);
  const e = await s.waitForStatus(String(evaluation.id), ['Successful', 'Failed', 'Killed']);
  // The rows as Postgres holds them (runs table: dataset and sub-folder apart).
  t.match(f, { status: 'Successful', pipeline: 'FULL_TRAINING', schedule: 'weekly-full', dataset: 'd', dataset_sub: '', eval_dataset: 'd', eval_dataset_sub: 'holdout', score: 0.5 },
    `the full firing ran as a full pipeline with its evaluation dataset (${String(f.failure_reason ?? '')})`);
  t.same([f.output_major, f.output_minor], [1, 1], 'and made version 1.1');
  t.match(e, { status: 'Successful', pipeline: 'EVALUATE_ONLY', schedule: 'weekly-eval', dataset: 'd', dataset_sub: 'holdout', eval_dataset: null, score: 0.5 },
    `the evaluation firing ran as an evaluation of the sub-folder (${String(e.failure_reason ?? '')})`);
  t.equal(e.output_major, null, 'which makes no version');
});
