// Issue 23, usage: `trainyard projects usage` adds up each attempt's time on its agent (GPU-hours by model,
// CPU-hours), a requeued attempt included; its figures equal the sum of the attempts' times as the run
// history (run_events) has them. Runs by outcome, storage held, and who sees which project's usage. The
// console's Usage page shows the same with a uPlot chart, in real Chromium (.test-output/usage/usage.png).
import t from 'tap';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { Stack, fakeGpus, root, tempDir, writeTree } from '../helpers/stack.js';
import { Gate, gatedTrainPy, quickTrainPy, waitForAttempt } from '../helpers/packages.js';

const H100 = 'NVIDIA H100 80GB HBM3';
const A100 = 'NVIDIA A100-SXM4-40GB';
const chromiumPath = process.env.TRAINYARD_CHROMIUM ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p)) ?? 'chromium';
const shots = path.join(root, '.test-output', 'usage');

t.test('usage per project equals the sum of its attempts\' times, requeued attempts included', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'hbox', gpus: fakeGpus(2, 'h', { model: H100 }) }] });
  const token = async (project: string, role: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  const as = (tok: string) => async (args: string[]) => {
    const r = await s.cli([...args, '--json', '--token', tok]);
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : null, err: r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null, stderr: r.stderr };
  };
  const memberA = await token('alpha', 'member');
  const A = as(memberA);
  const B = as(await token('beta', 'member'));
  const BR = as(await token('beta', 'reader'));
  const ok = async (p: ReturnType<typeof A>) => { const x = await p; if (x.code !== 0) throw new Error(x.stderr); return x.out; };

  await ok(A(['package', 'push', writeTree(tempDir(), { 'train.py': quickTrainPy }), '--name', 'q']));
  await ok(A(['package', 'push', writeTree(tempDir(), { 'train.py': gatedTrainPy }), '--name', 'g']));
  await ok(A(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']));
  await ok(B(['dataset', 'push', writeTree(tempDir(), { 'y.csv': '1,2,3\n' }), '--name', 'e']));

  // One run on an H100; one that starts on an H100, loses its agent, and finishes on an A100.
  const quick = await ok(A(['run', 'train', '--package', 'q', '--dataset', 'd', '--gpus', '1', '--cpus', '2', '--wait']));
  t.equal(quick.status, 'Successful');
  const gate = new Gate();
  const moved = await ok(A(['run', 'train', '--package', 'g', '--dataset', 'd', '--gpus', '1', '--cpus', '1', '--env', `GATE=${gate.file}`]));
  await waitForAttempt(s, moved.id, 1, 'Running');
  await s.daemons.find((d) => d.name === 'hbox')!.kill9();
  await s.startAgent('abox', { gpus: fakeGpus(1, 'a', { model: A100 }) });
  await waitForAttempt(s, moved.id, 2, 'Running');
  gate.open();
  await s.waitForStatus(moved.id, ['Successful']);

  // The attempts' times from the run history: from the first Packaging/Running of the attempt to the
  // next row of the run that is not that attempt's own progress.
  const attempts = await s.query<{ run_id: string; attempt: number; started: number; ended: number }>(`
    WITH ev AS (SELECT id, run_id, attempt, status::text AS status, at FROM run_events WHERE run_id = ANY($1)),
    starts AS (SELECT run_id, attempt, min(id) AS sid FROM ev WHERE status IN ('Packaging', 'Running') GROUP BY run_id, attempt)
    SELECT s.run_id, s.attempt,
      extract(epoch FROM (SELECT at FROM ev WHERE id = s.sid))::float8 AS started,
      extract(epoch FROM (SELECT at FROM ev e WHERE e.run_id = s.run_id AND e.id > s.sid
        AND NOT (e.attempt = s.attempt AND e.status IN ('Packaging', 'Running')) ORDER BY e.id LIMIT 1))::float8 AS ended
    FROM starts s ORDER BY s.run_id, s.attempt`, [[quick.id, moved.id]]);
  t.equal(attempts.length, 3, 'three attempts ran: the quick run\'s, and the moved run\'s two');
  const dur = (run: string, attempt: number) => { const a = attempts.find((x) => x.run_id === run && x.attempt === attempt)!; return (a.ended - a.started) / 3600; };
  const lost = dur(moved.id, 1);
  t.ok(lost > 0, 'the attempt whose agent was lost held its GPU for a while');
  const h100 = dur(quick.id, 1) + lost;
  const a100 = dur(moved.id, 2);

  const usage = await ok(A(['projects', 'usage', '--since', '1h']));
  t.same(usage.projects.map((p: any) => p.project), ['alpha'], 'a member sees its own project');
  const [alpha] = usage.projects;
  const near = (x: number, y: number, what: string) => t.ok(Math.abs(x - y) < 1e-9, `${what}: ${x} = ${y}`);
  near(alpha.gpu_hours, h100 + a100, 'GPU-hours: the sum of the attempts\' times × their GPUs');
  const byModel = Object.fromEntries(alpha.gpu_hours_by_model.map((m: any) => [m.model, m.hours]));
  t.same(Object.keys(byModel).sort(), [A100, H100], 'by model: the two GPU models used');
  near(byModel[H100], h100, 'H100: the quick run and the lost attempt');
  near(byModel[A100], a100, 'A100: the attempt that finished');
  near(alpha.cpu_hours, dur(quick.id, 1) * 2 + lost + a100, 'CPU-hours: each attempt\'s time × the CPUs its run asked for');
  t.equal(Number(alpha.attempts), 3);
  t.same(alpha.runs_by_outcome, [{ status: 'Successful', runs: 2 }], 'runs by outcome');
  const projects = await ok(A(['projects']));
  t.equal(Number(alpha.storage_bytes), projects.find((p: any) => p.name === 'alpha').storage_bytes, 'storage: what the quota counts');
  t.ok(alpha.series.length > 0, 'a series for the chart');
  near(alpha.series.reduce((n: number, p: any) => n + p.gpu_hours, 0), h100 + a100, 'the series adds up to the total');

  // Who sees what: beta's member and reader see beta only; naming alpha is refused; an admin sees both.
  const beta = await ok(BR(['projects', 'usage']));
  t.same(beta.projects.map((p: any) => [p.project, p.gpu_hours]), [['beta', 0]], 'a reader sees its project\'s usage (no GPU used)');
  t.ok(Number(beta.projects[0].storage_bytes) > 0, 'beta holds its dataset');
  t.equal((await B(['projects', 'usage', '--project', 'alpha'])).err?.code, 'PERMISSION_DENIED', 'another project\'s usage is refused');
  const all = await s.cliJson(['projects', 'usage']);
  t.same(all.projects.map((p: any) => p.project), ['alpha', 'beta'], 'an admin sees every project');
  const text = await s.cli(['projects', 'usage']);
  t.match(text.stdout, /alpha\s+\d+\.\d+\s+NVIDIA H100/, 'the table');
  t.equal((await A(['projects', 'usage', '--since', 'yesterday'])).code, 2, '--since is checked');

  // The console's Usage page: the same figures, and a uPlot chart, in real Chromium (screenshot kept).
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  const page = await (await browser.newContext({ viewport: { width: 1360, height: 900 } })).newPage();
  const problems: string[] = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`http://${s.httpAddress}/`);
  await page.fill('input[name=token]', memberA);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=who]');
  await page.goto(`http://${s.httpAddress}/#/usage?since=1d`);
  await page.waitForSelector('[data-testid=usage-chart] canvas');
  const row = page.locator('[data-testid=usage] tbody tr');
  t.equal(await row.count(), 1, 'the member sees one project');
  const cells = await row.first().locator('td').allTextContents();
  t.equal(cells[0], 'alpha');
  t.equal(cells[1], alpha.gpu_hours.toFixed(3), 'GPU-hours as projects usage says');
  t.match(cells[2], /NVIDIA H100 80GB HBM3 \d/, 'by model');
  t.equal(cells[5], 'Successful 2', 'runs by outcome');
  t.match(await page.textContent('[data-testid=usage-chart] .u-legend'), /alpha/, 'the chart\'s legend names the project');
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, 'usage.png'), fullPage: true });
  t.same(problems, [], 'no page error, no CSP violation');
});
