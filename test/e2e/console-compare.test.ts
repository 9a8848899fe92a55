// Issue 23, the console's Compare page in headless Chromium against a real stack: runs picked in the runs
// list, their curves overlaid by name (one uPlot chart per name, a line per run), and beside each run its
// differences from the first (env, data manifest, summaries), the same list `trainyard run diff` gives.
// Who may: another project's token gets 404 for the comparison. Screenshot: .test-output/console/compare.png.
import t from 'tap';
import path from 'node:path';
import { tempDir, writeTree } from '../helpers/stack.js';
import { consoleProject, consoleShots } from '../helpers/console-project.js';

// A curve that depends on LR, so the two runs' lines differ; `acc` only when LR is 0.2 (a name one run lacks).
const trainPy = `
import os
import trainyard
class Main:
    def train(self, d):
        lr = float(os.environ["LR"])
        for i in range(40):
            trainyard.log(step=i, loss=1.0 / (1 + lr * i))
            if lr == 0.2:
                trainyard.log(step=i, acc=i / 40.0)
        trainyard.summary(best_loss=1.0 / (1 + lr * 39))
    def save(self):
        open("model.txt", "w").write("ok")
`;

t.test('Compare: runs picked in the list, curves overlaid by name, each run\'s differences beside it', async (t) => {
  const { s, base, member, other, M, signIn, pageErrors } = await consoleProject(t);
  await M(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'curves']);
  await M(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd1']);
  await M(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '2\n', 'y.csv': '3\n' }), '--name', 'd2']);
  const a = (await M(['run', 'train', '--package', 'curves', '--dataset', 'd1', '--env', 'LR=0.1'])).id as string;
  const b = (await M(['run', 'train', '--package', 'curves', '--dataset', 'd2', '--env', 'LR=0.2'])).id as string;
  t.equal((await s.waitForStatus(a, ['Successful', 'Failed'])).status, 'Successful');
  t.equal((await s.waitForStatus(b, ['Successful', 'Failed'])).status, 'Successful');

  const page = await signIn({ width: 1360, height: 1000 });

  // Pick the two runs in the list (a first, so it is the one the other is compared with), then Compare.
  await page.goto(`${base}/#/runs`);
  await page.waitForSelector(`[data-testid=compare-pick][value="${b}"]`);
  t.ok(await page.isDisabled('[data-testid=compare]'), 'Compare needs two runs');
  await page.check(`[data-testid=compare-pick][value="${a}"]`);
  await page.check(`[data-testid=compare-pick][value="${b}"]`);
  await page.click('[data-testid=compare]');
  await page.waitForSelector('[data-testid=compare-chart][data-name=loss][data-runs="2"] canvas', { timeout: 60_000 });
  t.match(page.url(), `#/compare?runs=${a}%2C${b}`, 'the picked runs are in the URL (a link can be shared)');
  const loss = page.locator('[data-testid=compare-chart][data-name=loss]');
  t.equal(await loss.getAttribute('data-steps'), '40', 'loss overlays both runs on their 40 steps');
  t.same(await loss.locator('.u-legend .u-series .u-label').allTextContents(), ['step', a, b], 'one line per run, named by the run');
  t.equal(await page.locator('[data-testid=compare-chart][data-name=acc]').getAttribute('data-runs'), '1', 'a name only one run logged has that run\'s line');

  // Beside b: what differs from a, as `run diff a b` says.
  const diffs = page.locator(`[data-testid=differences][data-run="${b}"]`);
  await diffs.waitFor();
  t.match(await diffs.locator('[data-testid=difference][data-what=env]').textContent(), /~ LR: 0\.1 → 0\.2/, 'the env difference');
  const data = await diffs.locator('[data-testid=difference][data-what="data (manifest sha256)"]').textContent();
  t.match(data, /\+ y\.csv/, 'the data manifest: a file added');
  t.match(data, /~ x\.csv/, 'and a file changed');
  t.match(await diffs.locator('[data-testid=difference][data-what="summary best_loss"]').textContent(), /summary best_loss/, 'the summaries\' difference');
  const cli = await M(['run', 'diff', a, b]);
  const shown = await diffs.locator(':scope > ul > [data-testid=difference]').evaluateAll((els) => els.map((e) => e.getAttribute('data-what')));
  t.same(shown, (cli.differences as { what: string }[]).map((d) => d.what), 'the same differences, in the same order, as trainyard run diff');
  await page.screenshot({ path: path.join(consoleShots, 'compare.png'), fullPage: true });

  // Who may: another project's reader cannot compare (nor learn the runs exist); the other run is required.
  const res = await fetch(`${base}/api/runs/${b}/diff?against=${a}`, { headers: { authorization: `Bearer ${other}` } });
  t.equal(res.status, 404, 'another project\'s reader: 404');
  t.notMatch(await res.text(), /vision/, 'not naming the project');
  t.equal((await fetch(`${base}/api/runs/${b}/diff`, { headers: { authorization: `Bearer ${member}` } })).status, 400, 'without ?against: 400');
  t.same(pageErrors, [], 'no script errors');
});
