// Issue 23, the run page's charts, in headless Chromium against a real stack: a run's curves drawn with
// uPlot and updated live while train.py logs (no reload), hover showing step and value, and a
// 1,000,000-point series drawn without a main-thread task of 200 ms or more (the server downsamples it).
// Screenshots go to .test-output/console/.
import t from 'tap';
import path from 'node:path';
import { tempDir, writeTree } from '../helpers/stack.js';
import { Gate, until } from '../helpers/packages.js';
import { consoleProject, consoleShots as shots } from '../helpers/console-project.js';

// 50 steps of loss and acc, then (with $GATE) a wait for the gate, then 50 more.
const trainPy = `
import os, time
import trainyard
class Main:
    def train(self, d):
        for i in range(100):
            if i == 50 and os.environ.get("GATE"):
                deadline = time.time() + 300
                while not os.path.exists(os.environ["GATE"]) and time.time() < deadline:
                    time.sleep(0.05)
            trainyard.log(step=i, loss=1.0 / (i + 1), acc=i / 100.0)
        trainyard.summary(best_acc=0.99)
    def save(self):
        open("model.txt", "w").write("ok")
`;

t.test('run page charts: live while the run logs, hover, and a million points without a long task', async (t) => {
  const { s, base, other, M, signIn, pageErrors } = await consoleProject(t);
  await M(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'curves']);
  await M(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const gate = new Gate();
  t.teardown(() => gate.open());
  const id = (await M(['run', 'train', '--package', 'curves', '--dataset', 'd', '--env', `GATE=${gate.file}`])).id as string;

  const page = await signIn({ width: 1360, height: 900 });

  // Live: the chart shows the first 50 steps, then the rest arrive on the same page.
  await page.goto(`${base}/#/runs/${id}`);
  await page.waitForSelector('[data-testid=metric-chart][data-name=loss][data-points="50"]', { timeout: 120_000 });
  t.equal(await page.locator('[data-testid=metric-chart][data-name=loss] canvas').count(), 1, 'loss is drawn on a canvas (uPlot)');
  t.equal(await page.locator('[data-testid=metric-chart][data-name=acc]').count(), 1, 'one chart per name');
  gate.open();
  await page.waitForSelector('[data-testid=metric-chart][data-name=loss][data-points="100"]', { timeout: 120_000 });
  t.pass('the chart grew to 100 points while the page stayed open');
  await page.waitForSelector('[data-testid=metric-summary]:has-text("best_acc")', { timeout: 60_000 });
  t.equal(await page.locator('[data-testid=metric-chart][data-name=loss][data-last-step="99"]').count(), 1, 'up to the last step');

  // Hover: the legend says the step and the value under the cursor.
  const over = page.locator('[data-testid=metric-chart][data-name=loss] .u-over');
  const box = (await over.boundingBox())!;
  await page.mouse.move(box.x + box.width * 0.1, box.y + box.height / 2);
  const legend = page.locator('[data-testid=metric-chart][data-name=loss] .u-legend .u-value');
  await until('the legend to show the hovered point', async () => (await legend.allTextContents()).every((v) => /\d/.test(v)), 10_000);
  const [step, value] = (await legend.allTextContents()).map(Number);
  t.ok(Number.isInteger(step) && step! >= 0 && step! < 100, `hover shows a step (${step})`);
  t.ok(Math.abs(value! - 1 / (step! + 1)) < 0.001, `and its value (${value}, logged ${1 / (step! + 1)})`);
  await page.screenshot({ path: path.join(shots, 'run-metrics-live.png'), fullPage: true });
  await s.waitForStatus(id, ['Successful', 'Failed']);

  // A million points, stored as an agent would have, for a second run (no agent logs that many in a test).
  const big = (await M(['run', 'train', '--package', 'curves', '--dataset', 'd'])).id as string;
  await s.waitForStatus(big, ['Successful', 'Failed']);
  const [series] = await s.query(`INSERT INTO run_metric_series (run_id, name, last_step, points) VALUES ($1, 'big', 999999, 1000000) RETURNING id`, [big]);
  await s.query(`INSERT INTO run_metric_points (series_id, step, value, attempt, t)
    SELECT $1, q, sin(q / 5000.0) + (q % 997) / 997.0, 1, 0 FROM generate_series(0, 999999) AS q`, [series!.id]);
  await page.goto(`${base}/#/runs`);
  await page.evaluate(() => {
    const w = window as unknown as { longTasks: number[] };
    w.longTasks = [];
    new PerformanceObserver((list) => { for (const e of list.getEntries()) w.longTasks.push(e.duration); }).observe({ type: 'longtask' });
  });
  await page.goto(`${base}/#/runs/${big}`);
  await page.waitForSelector('[data-testid=metric-chart][data-name=big][data-points="1000000"] canvas', { timeout: 120_000 });
  await page.waitForTimeout(300);
  const longTasks = await page.evaluate(() => (window as unknown as { longTasks: number[] }).longTasks);
  t.ok(longTasks.every((d) => d < 200), `no task of 200 ms or more while the million-point chart loaded and drew (longest ${Math.round(Math.max(0, ...longTasks))} ms)`);
  t.match(await page.textContent('[data-testid=metric-chart][data-name=big]'), /1,000,000 points \(\d[\d,]* drawn\)/, 'it says how many points it drew of how many');
  await page.screenshot({ path: path.join(shots, 'run-metrics-million.png'), fullPage: true });

  // Another project's token: the metrics are a run that does not exist.
  const res = await fetch(`${base}/api/runs/${id}/metrics`, { headers: { authorization: `Bearer ${other}` } });
  t.equal(res.status, 404, 'another project\'s reader: 404');
  t.match(await res.text(), /not found/);
  t.notMatch(await (await fetch(`${base}/api/runs/${id}/metrics`, { headers: { authorization: `Bearer ${other}` } })).text(), /vision/, 'not naming the project');
  t.same(pageErrors, [], 'no script errors');
});
