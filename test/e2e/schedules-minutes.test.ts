// Issue 9, as it words it: two schedulers over several minutes of `* * * * *`, each firing makes exactly
// one run. (schedules.test.ts races the same code every 2 s for ten firings; this is the real cron, minute
// by minute, so it takes about three minutes and runs beside the other files.)
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { quickTrainPy as quick, until } from '../helpers/packages.js';

t.test('two schedulers, `* * * * *` for three firings: one run each', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  await s.startScheduler();
  for (const args of [['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'p'], ['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']]) {
    await s.cliJson(args);
  }
  await s.cliJson(['schedules', 'create', 'minutely', '--cron', '* * * * *', '--', 'run', 'train', '--package', 'p', '--dataset', 'd']);
  const runs = () => s.query<{ id: string; schedule_fire_at: Date }>("SELECT id, schedule_fire_at FROM runs WHERE schedule = 'minutely' ORDER BY schedule_fire_at");
  await until('three minutely firings', async () => (await runs()).length >= 3, 300_000);
  await s.cliJson(['schedules', 'pause', 'minutely']);
  const made = await runs();
  const times = made.map((r) => r.schedule_fire_at.getTime());
  t.equal(new Set(times).size, made.length, `${made.length} runs, each for a different firing`);
  t.ok(times.every((ms) => ms % 60_000 === 0), 'each on a whole minute');
  t.equal((times.at(-1)! - times[0]!) / 60_000 + 1, made.length, 'one run for every minute in the span: none missed, none twice');
  const fired = (name: string) => s.logOf(name).split('\n').filter((l) => l.includes('"msg":"schedule fired"')).length;
  t.equal(fired('scheduler1') + fired('scheduler2'), made.length, 'the two schedulers fired once per run between them');
  t.equal(Number((await s.cliJson(['schedules', 'get', 'minutely'])).fired), made.length, 'schedules get counts the same');
});
