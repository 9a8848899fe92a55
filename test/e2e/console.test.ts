// Issue 10, the web console: every page in real headless Chromium (Debian's chromium, driven by
// playwright-core) against a real stack (scheduler, agent with two fake GPUs, real runs of a stdlib-only
// package). A reader of one project cannot see another project's run; a member follows a live log, sees a
// line arrive, previews an image, a CSV, a PDF and a JSON file, downloads a file, kills a run, sees a full
// run's score and a failed run's reason; a 100k-line log streams in with no task that holds the page for
// 1 s or more; an admin sees the fleet and filters the runs by project and by schedule. Screenshots of
// each page go to .test-output/console/.
import t from 'tap';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Stack, fakeGpus, root, tempDir, writeTree } from '../helpers/stack.js';
import { Gate } from '../helpers/packages.js';

const chromiumPath = process.env.TRAINYARD_CHROMIUM ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p)) ?? 'chromium';
const shots = path.join(root, '.test-output', 'console');

// train() fails at once with $FAIL (when set), prints LINES lines, waits for $GATE (when set), then writes
// artifacts (a real 4x4 PNG, a CSV, a PDF, a text file, a JSON file written compact, an SVG) and prints a
// line with markup in it, which the console must show as text. evaluate() scores 0.875 (for a full run).
const trainPy = `
import os, struct, time, zlib
def png(w, h, rgb):
    raw = b"".join(b"\\x00" + bytes(rgb) * w for _ in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
PDF = b"%PDF-1.4\\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 100]>>endobj\\ntrailer<</Root 1 0 R>>\\n%%EOF\\n"
class Main:
    def train(self, d):
        if os.environ.get("FAIL"):
            raise RuntimeError(os.environ["FAIL"])
        n = int(os.environ.get("LINES", "5"))
        for i in range(1, n + 1):
            print("line %d" % i, flush=True)
        gate = os.environ.get("GATE")
        deadline = time.time() + 300
        while gate and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.05)
        a = os.environ["artifacts_directory"]
        os.makedirs(os.path.join(a, "plots"), exist_ok=True)
        with open(os.path.join(a, "plots", "chart.png"), "wb") as fh:
            fh.write(png(4, 4, (220, 40, 40)))
        with open(os.path.join(a, "metrics.csv"), "w") as fh:
            fh.write("metric,value\\naccuracy,0.93\\n")
        with open(os.path.join(a, "report.pdf"), "wb") as fh:
            fh.write(PDF)
        with open(os.path.join(a, "notes.txt"), "w") as fh:
            fh.write("hello from train\\n")
        with open(os.path.join(a, "summary.json"), "w") as fh:
            fh.write('{"accuracy":0.93,"labels":["cat","dog"]}')
        with open(os.path.join(a, "logo.svg"), "w") as fh:
            fh.write('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
        print("<b>trained</b> & done", flush=True)
    def evaluate(self, d):
        return 0.875
    def save(self):
        with open("model.txt", "w") as fh:
            fh.write("ok")
`;

const csv = 'metric,value\naccuracy,0.93\n';

t.test('the web console, page by page, in headless Chromium', async (t) => {
  mkdirSync(shots, { recursive: true });
  const s = await Stack.create(t, { agents: [{ gpus: fakeGpus(2, 'console'), labels: 'zone=a,tier=gold' }] });
  const base = `http://${s.httpAddress}`;
  const token = async (project: string, role: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', role, '--name', `${role}-${project}`])).token as string;
  const member = await token('vision', 'member');
  const reader = await token('vision', 'reader');
  const otherMember = await token('other', 'member');
  const as = (tok: string) => (args: string[]) => s.cliJson([...args, '--token', tok]);
  const M = as(member);
  const O = as(otherMember);

  await M(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'viz']);
  await M(['dataset', 'push', writeTree(tempDir(), { 'a.csv': '1,2\n', 'sub/b.csv': '3,4\n5,6\n' }), '--name', 'd']);
  await O(['package', 'push', writeTree(tempDir(), { 'train.py': trainPy }), '--name', 'hidden']);
  await O(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'od']);
  await s.cliJson(['projects', 'set', 'vision', '--max-runs', '4', '--max-gpus', '2']);
  await M(['schedules', 'create', 'nightly', '--cron', '0 3 29 2 *', '--', 'run', 'train', '--package', 'viz', '--dataset', 'd']);

  const gate = new Gate();
  const runA = (await M(['run', 'train', '--package', 'viz', '--dataset', 'd', '--gpu', '--env', `GATE=${gate.file}`, '--env', 'save_training_data=true'])).id as string;
  const runB = (await O(['run', 'train', '--package', 'hidden', '--dataset', 'od'])).id as string;

  const browser: Browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  const cspViolations: string[] = [];
  const pageErrors: string[] = [];
  const signIn = async (tok: string): Promise<Page> => {
    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1360, height: 900 } });
    const page = await context.newPage();
    page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${base}/`);
    await page.fill('input[name=token]', tok);
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-testid=who]');
    return page;
  };
  const shot = (page: Page, name: string) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  const get = (p: string, tok?: string, method = 'GET') => fetch(`${base}${p}`, { method, headers: tok ? { authorization: `Bearer ${tok}` } : {} });

  await t.test('the page is self-contained and locked down', async (t) => {
    const res = await get('/');
    t.equal(res.status, 200, 'GET / serves the console');
    const csp = res.headers.get('content-security-policy') ?? '';
    t.match(csp, /script-src 'self'/, 'scripts only from the scheduler');
    t.notMatch(csp, /unsafe-inline|unsafe-eval/, 'no inline script');
    t.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const html = await res.text();
    t.notMatch(html, /https?:\/\//, 'the page loads nothing from another host (no CDN)');
    t.notMatch(html, /<script>/, 'and has no inline script');
    t.equal((await get('/assets/app.js')).status, 200, 'its bundle is served');
    t.equal((await get('/api/runs')).status, 401, 'the API without a token: 401');
    t.equal((await get('/api/runs', 'tyt_aaaaaaaaaaaa_' + 'a'.repeat(43))).status, 401, 'with an unknown token: 401');
  });

  await t.test('a reader sees its project only, and cannot kill', async (t) => {
    const page = await signIn(reader);
    t.match(await page.textContent('[data-testid=who]'), /reader of vision/);
    await page.waitForSelector(`[data-testid=runs] a:text("${runA}")`);
    t.equal(await page.locator(`[data-testid=runs] a:text("${runB}")`).count(), 0, 'another project\'s run is not listed');
    await shot(page, 'runs-reader');
    await page.goto(`${base}/#/runs/${runB}`);
    const refusal = await page.waitForSelector('[data-testid=error]');
    // Issue 19: another project's run is, to this token, a run that does not exist (on main: 403 naming it).
    t.match(await refusal.textContent(), new RegExp(`run ${runB} not found`), 'opening it by id: not found, as a missing run');
    t.notMatch(await refusal.textContent(), /other/, 'not naming its project');
    t.equal((await get(`/api/runs/${runB}`, reader)).status, 404, 'the API answers 404 too');
    t.same(await (await get(`/api/runs/${runB}`, reader)).json(), JSON.parse(JSON.stringify(await (await get('/api/runs/run_nosuchrun0000000', reader)).json()).replaceAll('run_nosuchrun0000000', runB)), 'with the body a missing run gets');
    t.equal((await get(`/api/runs/${runB}/files`, reader)).status, 404, 'and its outputs');
    t.equal((await get(`/api/runs/${runB}/logs`, reader)).status, 404, 'and its log stream');
    t.equal((await get('/api/runs?project=other', reader)).status, 403, 'a list filtered on a project it names itself: 403');
    await page.goto(`${base}/#/runs/${runA}`);
    await page.waitForSelector('[data-testid=run-facts]');
    t.equal(await page.locator('[data-testid=kill]').count(), 0, 'a reader gets no Kill button');
    t.equal((await get(`/api/runs/${runA}/kill`, reader, 'POST')).status, 403, 'and the server refuses a reader\'s kill');
    t.equal((await get('/api/agents', reader)).status, 403, 'the fleet is for admins');
    await page.context().close();
  });

  const admin = await signIn(s.adminToken);
  await t.test('an admin sees the agents, each GPU and the run that holds it', async (t) => {
    await admin.goto(`${base}/#/agents`);
    await admin.waitForSelector(`[data-agent=agent1] [data-testid=gpu-holder] a:text("${runA}")`, { timeout: 120_000 });
    const card = admin.locator('[data-agent=agent1]');
    t.match(await card.textContent(), /GPU-console-0/, 'GPU UUIDs are shown');
    t.match(await card.textContent(), /zone=a/, 'and labels');
    t.ok(await admin.locator('[data-agent=agent1] [data-testid=heartbeat]').textContent(), 'and the last heartbeat');
    t.equal(await admin.locator('[data-testid=drain-agent1]').count(), 1, 'Drain is offered');
    await shot(admin, 'agents');
  });

  const page = await signIn(member);
  await t.test('run details: live log, status, GPUs, then outputs with previews and downloads', async (t) => {
    await page.goto(`${base}/#/runs/${runA}`);
    await page.waitForSelector('[data-testid=log] .log-line:has-text("line 5")', { timeout: 120_000 });
    t.equal(await page.textContent('[data-testid=status]'), 'Running', 'the run is Running while train() waits');
    t.equal(await page.textContent('[data-testid=run-agent]'), 'agent1');
    t.match(await page.textContent('[data-testid=run-gpus]'), /GPU \d/, 'its GPU');
    t.equal(await page.locator('[data-testid=kill]').count(), 1, 'a member may kill its project\'s run');
    t.equal(await page.locator('[data-testid=log] .log-line:has-text("trained")').count(), 0, 'the last line has not come yet');
    gate.open();
    // Without a reload: the line arrives over the open stream, and the status follows.
    const live = await page.waitForSelector('[data-testid=log] .log-line:has-text("<b>trained</b> & done")', { timeout: 120_000 });
    t.ok(live, 'a new log line arrived live');
    t.equal(await page.locator('[data-testid=log] b').count(), 0, 'markup in a log line is shown as text, not rendered');
    await page.waitForSelector('[data-testid=status]:text("Successful")', { timeout: 120_000 });
    t.pass('the status became Successful without a reload');
    await page.waitForSelector('[data-testid=results-json]');
    t.match(await page.textContent('[data-testid=results-json]'), /"pipeline": "TRAIN_ONLY"/, '_results.json is shown');
    t.ok(await page.locator('[data-testid=lineage-json]').count(), 'and the lineage');
    t.match(await page.textContent('[data-testid=timeline]'), /Packaging[\s\S]*Running[\s\S]*train/, 'the status and phase timeline');

    const item = (p: string) => page.locator(`[data-path="${p}"]`);
    await page.waitForSelector('[data-path="artifacts/plots/chart.png"]');
    t.equal(await item('train_data/sub/b.csv').count(), 1, 'the data copy is in the tree');
    t.equal(await item('_results.json').count(), 1, 'so are the run\'s own outputs');
    await item('artifacts/plots/chart.png').locator('button:text("Preview")').click();
    const img = await page.waitForSelector('[data-testid=preview-image]');
    await page.waitForFunction(() => (document.querySelector('[data-testid=preview-image]') as HTMLImageElement | null)?.complete === true);
    t.equal(await img.evaluate((el) => (el as HTMLImageElement).naturalWidth), 4, 'the PNG artifact is previewed (decoded, 4 px wide)');
    t.match(await img.getAttribute('src'), /^blob:/, 'from a blob: the browser holds no storage URL');
    await shot(page, 'run-details');
    await item('artifacts/metrics.csv').locator('button:text("Preview")').click();
    await page.waitForSelector('[data-testid=preview-csv] td:text("accuracy")');
    t.pass('the CSV is previewed as a table');
    await item('artifacts/report.pdf').locator('button:text("Preview")').click();
    const pdf = await page.waitForSelector('[data-testid=preview-pdf]');
    t.equal(await pdf.getAttribute('type'), 'application/pdf', 'the PDF is embedded');
    t.match(await pdf.getAttribute('src'), /^blob:/, 'from a blob too');
    const served = await get(`/api/runs/${runA}/file?path=${encodeURIComponent('artifacts/report.pdf')}`, member);
    t.equal(served.headers.get('content-type'), 'application/pdf', 'served as a PDF');
    t.match(await served.text(), /^%PDF-1\.4/, 'with its bytes');
    await item('artifacts/notes.txt').locator('button:text("Preview")').click();
    await page.waitForSelector('[data-testid=preview-text]:has-text("hello from train")');
    await item('artifacts/summary.json').locator('button:text("Preview")').click();
    const json = await page.waitForSelector('[data-testid=preview-text]:has-text("accuracy")');
    t.equal(await json.textContent(), '{\n  "accuracy": 0.93,\n  "labels": [\n    "cat",\n    "dog"\n  ]\n}',
      'the JSON file is previewed with its content, parsed and laid out (it was written on one line)');
    t.equal(await item('artifacts/logo.svg').locator('button:text("Preview")').count(), 0, 'an SVG gets no preview (it could hold script)');

    const [download] = await Promise.all([page.waitForEvent('download'), item('artifacts/metrics.csv').locator('button:text("Download")').click()]);
    t.equal(download.suggestedFilename(), 'metrics.csv', 'the download is named after the file');
    t.equal(readFileSync((await download.path())!, 'utf8'), csv, 'and has its bytes');

    const file = await get(`/api/runs/${runA}/file?path=${encodeURIComponent('artifacts/logo.svg')}`, member);
    t.equal(file.headers.get('content-type'), 'application/octet-stream', 'the server serves an SVG as bytes');
    t.match(file.headers.get('content-disposition'), /^attachment/, 'as an attachment');
    t.match(file.headers.get('content-security-policy'), /sandbox/, 'sandboxed');
    for (const bad of ['../../../packages/viz', 'artifacts/../../attempt-2/x', '/etc/passwd', 'artifacts//x', 'a\\b']) {
      t.equal((await get(`/api/runs/${runA}/file?path=${encodeURIComponent(bad)}`, member)).status, 400, `path "${bad}" is refused`);
    }
    t.equal((await get(`/api/runs/${runA}/file?path=nothing.txt`, member)).status, 404, 'a missing file: 404');
    t.equal((await get(`/api/runs/${runB}/file?path=_results.json`, member)).status, 404, 'another project\'s file: 404, as a missing run');
  });

  // Started here, once runA has made viz 1.1 (the lineage below is read from it), and left to finish
  // while the list is tested: a full run (scored by evaluate()), a run whose train() fails, and a run of
  // the nightly schedule fired now.
  let runFull = '';
  let runFail = '';
  let runFired = '';
  await t.test('runs list: filters, sorting, live statuses, kill', async (t) => {
    const runD = (await M(['run', 'train', '--package', 'viz', '--dataset', 'd', '--env', `GATE=${new Gate().file}`])).id as string;
    runFull = (await M(['run', 'full', '--package', 'viz', '--dataset', 'd'])).id as string;
    runFail = (await M(['run', 'train', '--package', 'viz', '--dataset', 'd', '--env', 'FAIL=labels file missing'])).id as string;
    runFired = (await M(['schedules', 'run-now', 'nightly'])).id as string;
    await page.goto(`${base}/#/runs`);
    const row = (id: string) => page.locator(`[data-testid=runs] tr:has(a:text("${id}"))`);
    await page.waitForSelector(`[data-testid=runs] tr:has(a:text("${runD}"))`);
    t.equal(await page.locator(`[data-testid=runs] a:text("${runB}")`).count(), 0, 'a member sees its project\'s runs only');
    // Kill it from its page in a second tab; the list in this one shows the change without a reload.
    const other = await signIn(member);
    await other.goto(`${base}/#/runs/${runD}`);
    await other.click('[data-testid=kill]');
    await other.click('[data-testid=kill-confirm]');
    await other.waitForSelector('[data-testid=status]:text("Killed")', { timeout: 60_000 });
    t.pass('Kill on the run page ends the run Killed');
    await other.context().close();
    await row(runD).locator('[data-testid=status]:text("Killed")').waitFor();
    t.pass('the list shows Killed without a reload');

    await page.selectOption('select[name=status]', 'Successful');
    await page.waitForFunction((id) => !document.querySelector(`[data-testid=runs]`)?.textContent?.includes(id), runD);
    t.equal(await row(runA).count(), 1, 'filter by status: the Successful run stays');
    t.match(page.url(), /status=Successful/, 'the filter is in the URL');
    await page.selectOption('select[name=status]', '');
    await page.fill('input[name=package]', 'nope');
    await page.press('input[name=package]', 'Tab');
    await page.waitForSelector('[data-testid=runs] td.empty');
    t.pass('filter by package: none of "nope"');
    // Two filters changed before the page redraws (a quick hand, a loaded machine): the second change
    // keeps the first. Each change builds the URL from the one it finds, not the one last drawn.
    const hash = await page.evaluate(() => {
      const pkg = document.querySelector('input[name=package]') as HTMLInputElement;
      pkg.value = 'viz';
      pkg.dispatchEvent(new Event('change', { bubbles: true }));
      const pipeline = document.querySelector('select[name=pipeline]') as HTMLSelectElement;
      pipeline.value = 'TRAIN_ONLY';
      pipeline.dispatchEvent(new Event('change', { bubbles: true }));
      return location.hash;
    });
    t.match(hash, /package=viz/, `two filters changed at once are both in the URL (${hash})`);
    t.match(hash, /pipeline=TRAIN_ONLY/);
    await page.waitForSelector(`[data-testid=runs] a:text("${runD}")`);
    await page.click('[data-testid=runs] th:text("Run")');
    // The click's re-render comes after the click returns: wait for the header it draws with the rows.
    await page.waitForSelector('[data-testid=runs] th[aria-sort=ascending]:has-text("Run")');
    const ids = async () => page.locator('[data-testid=runs] tbody tr td:first-child').allTextContents();
    // The console sorts text as people read it (localeCompare, numeric: "run_6…" before "run_39…"), not by
    // code unit; with random ids the two orders differ now and then.
    const byId = (a: string, b: string) => a.localeCompare(b, undefined, { numeric: true });
    t.same(await ids(), [...(await ids())].sort(byId), 'sorted by run id, ascending');
    await page.click('[data-testid=runs] th:has-text("Run")');
    await page.waitForSelector('[data-testid=runs] th[aria-sort=descending]:has-text("Run")');
    t.same(await ids(), [...(await ids())].sort(byId).reverse(), 'and descending');
    await shot(page, 'runs');
  });

  /** The run ids the Runs page lists, once it lists exactly `want` (or what it lists after 15 s). */
  const listedOnce = async (p: Page, want: string[]) => {
    const cells = '[data-testid=runs] tbody tr td:first-child';
    await p.waitForFunction(([sel, ids]) => JSON.stringify(Array.from(document.querySelectorAll(sel), (td) => td.textContent).sort()) === JSON.stringify(ids),
      [cells, [...want].sort()] as const, { timeout: 15_000 }).catch(() => undefined);
    return (await p.locator(cells).allTextContents()).sort();
  };
  const column = async (p: Page, label: string) => {
    const index = (await p.locator('[data-testid=runs] thead th').allTextContents()).findIndex((h) => h.startsWith(label));
    return p.locator(`[data-testid=runs] tbody tr td:nth-child(${index + 1})`).allTextContents();
  };

  await t.test('runs list: an admin filters by project, and by schedule', async (t) => {
    const ids = async (project: string) => ((await get(`/api/runs?project=${project}&limit=500`, s.adminToken).then((r) => r.json())) as { runs: { id: string }[] }).runs.map((r) => r.id);
    const vision = await ids('vision');
    const other = await ids('other');
    t.ok(vision.includes(runA) && other.includes(runB), 'each project has runs the admin sees');
    await admin.goto(`${base}/#/runs`);
    await admin.waitForSelector(`[data-testid=runs] a:text("${runB}")`);
    t.ok(await admin.locator(`[data-testid=runs] a:text("${runA}")`).count(), 'unfiltered, the admin sees both projects\' runs');
    for (const [project, want] of [['vision', vision], ['other', other]] as const) {
      await admin.fill('input[name=project]', project);
      await admin.press('input[name=project]', 'Tab');
      t.same(await listedOnce(admin, want), [...want].sort(), `filter by project ${project}: exactly its runs are listed`);
      t.same([...new Set(await column(admin, 'Project'))], [project], 'and every row is of that project');
      t.match(admin.url(), new RegExp(`project=${project}`), 'the filter is in the URL');
    }
    await admin.fill('input[name=project]', '');
    await admin.press('input[name=project]', 'Tab');

    // The nightly schedule fired once (run-now): filtered by it, the list is that one run, whoever looks.
    t.same(((await get('/api/runs?schedule=nightly', member).then((r) => r.json())) as { runs: { id: string }[] }).runs.map((r) => r.id), [runFired],
      'the API filtered by schedule answers the fired run only');
    await admin.fill('input[name=schedule]', 'nightly');
    await admin.press('input[name=schedule]', 'Tab');
    t.same(await listedOnce(admin, [runFired]), [runFired], 'filter by schedule: exactly the run it fired is listed');
    t.same(await column(admin, 'Schedule'), ['nightly'], 'named after its schedule');
    await admin.fill('input[name=schedule]', 'no-such-schedule');
    await admin.press('input[name=schedule]', 'Tab');
    await admin.waitForSelector('[data-testid=runs] td.empty');
    t.pass('a schedule that fired nothing: no runs');
  });

  await t.test('run details: the score of a full run, the reason of a failed one', async (t) => {
    const full = await s.waitForStatus(runFull, ['Successful', 'Failed', 'Killed']);
    t.equal(full.status, 'Successful', 'the full run succeeded');
    await page.goto(`${base}/#/runs/${runFull}`);
    await page.waitForSelector('[data-testid=status]:text("Successful")');
    t.equal(await page.textContent('[data-testid=run-score]'), '0.875', 'its details show the score evaluate() returned');
    t.match(await page.textContent('[data-testid=timeline]'), /train[\s\S]*evaluate[\s\S]*save/, 'and its phases, evaluate among them');

    const failed = await s.waitForStatus(runFail, ['Successful', 'Failed', 'Killed']);
    t.equal(failed.status, 'Failed', 'the run whose train() raised failed');
    t.match(failed.failure_reason, /labels file missing/, 'with that reason in Postgres');
    await page.goto(`${base}/#/runs/${runFail}`);
    await page.waitForSelector('[data-testid=status]:text("Failed")');
    t.equal(await page.textContent('[data-testid=run-reason]'), failed.failure_reason, 'its details show the reason it failed');
    t.equal(await page.textContent('[data-testid=run-score]'), '—', 'and no score');
  });

  await t.test('the log keeps following when lines arrive between its move to the bottom and that scroll event', async (t) => {
    const lateGate = new Gate();
    const runE = (await M(['run', 'train', '--package', 'viz', '--dataset', 'd', '--env', 'LINES=60', '--env', `GATE=${lateGate.file}`])).id as string;
    await page.goto(`${base}/#/runs/${runE}`);
    await page.waitForSelector('[data-testid=log] .log-line:has-text("line 60")');
    // What a busy browser does: the log grew (a batch was painted) after the view moved to the bottom, and
    // only then does the scroll event of that move arrive, at a position no longer the bottom.
    await page.locator('[data-testid=log]').evaluate((el) => {
      const space = el.firstElementChild as HTMLElement;
      space.style.height = `${space.offsetHeight + 2000}px`;
      el.dispatchEvent(new Event('scroll'));
    });
    lateGate.open();
    t.equal((await s.waitForStatus(runE, ['Successful', 'Failed', 'Killed'])).status, 'Successful');
    await page.waitForSelector('[data-testid=log] .log-line:has-text("uploaded the new package version")', { timeout: 60_000 });
    // Still following: the view is at the bottom of everything that came after (it was not left behind).
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-testid=log]')!;
      return el.scrollTop + el.clientHeight >= el.scrollHeight - 18;
    }, undefined, { timeout: 10_000 });
    t.pass('the lines after it are followed: the view is at the bottom');
  });

  await t.test('a 100k-line log follows without freezing the page', async (t) => {
    // Every task the main thread runs for more than 50 ms is a 'longtask' entry: watched from before the
    // stream starts (the run's page is opened by a hash change, in this same document) to its end.
    await page.evaluate(() => {
      const w = window as unknown as { longTasks: number[] };
      w.longTasks = [];
      new PerformanceObserver((list) => { for (const e of list.getEntries()) w.longTasks.push(e.duration); }).observe({ type: 'longtask' });
    });
    const runC = (await M(['run', 'train', '--package', 'viz', '--dataset', 'd', '--env', 'LINES=100000'])).id as string;
    await page.evaluate((id) => { location.hash = `#/runs/${id}`; }, runC);
    await page.waitForSelector('[data-testid=log] .log-line:has-text("line 100000")', { timeout: 300_000 });
    t.pass('the last of 100,000 lines arrived and is in view (following)');
    const longTasks = await page.evaluate(() => (window as unknown as { longTasks?: number[] }).longTasks);
    t.ok(longTasks, 'the long tasks were watched in this same page throughout');
    const longest = Math.max(0, ...(longTasks ?? []));
    // The bound: on this 2-core machine, shared with other tests (load average 8-10), the virtualized log
    // gave 0 or 1 long task in each of five runs, the longest 151 ms. The same log rendering every line
    // (no virtualization) gave 34 long tasks, the longest 4.6 s. 1 s is a freeze anyone would see, more
    // than six times what a healthy page took at its worst, and far under what a frozen one takes.
    t.ok(longest < 1000, `no single task held the page for 1 s or more while 100,000 lines streamed in (${longTasks?.length} long tasks, the longest ${longest.toFixed(0)} ms)`);
    t.ok(Number(/(\d+) lines/.exec((await page.textContent('[data-testid=log-count]')) ?? '')?.[1]) >= 100_000, 'every line is held');
    const rows = await page.locator('[data-testid=log] .log-line').count();
    t.ok(rows < 300, `only the rows in view are in the DOM (${rows})`);
    t.equal(await page.evaluate(() => 1 + 1), 2, 'the page answers');
    await page.locator('[data-testid=log]').evaluate((el) => { el.scrollTop = 0; });
    await page.waitForSelector('[data-testid=log] .log-line[data-seq="1:1"]');
    t.pass('scrolling to the top shows the first line');
    await shot(page, 'run-logs-100k');
  });

  await t.test('packages, versions and lineage; datasets; projects; schedules; events', async (t) => {
    await page.goto(`${base}/#/packages`);
    await page.waitForSelector('[data-testid=packages] a:text("viz")');
    t.equal(await page.locator('[data-testid=packages] a:text("hidden")').count(), 0, 'another project\'s package is not listed');
    await shot(page, 'packages');
    await page.click('[data-testid=packages] a:text("viz")');
    await page.waitForSelector('[data-testid=versions]');
    const versions = await page.textContent('[data-testid=versions]');
    t.match(versions, new RegExp(runA), 'a version shows the run that made it');
    t.match(versions, /[0-9a-f]{64}/, 'and its sha256');
    await page.click('[data-testid=versions] tr:has(a:text("1.1")) button:text("Lineage")');
    await page.waitForSelector('[data-testid=lineage]');
    const lineage = await page.textContent('[data-testid=lineage]');
    t.match(lineage, new RegExp(`viz 1\\.1[\\s\\S]*${runA}[\\s\\S]*from 1\\.0[\\s\\S]*viz 1\\.0[\\s\\S]*uploaded`), 'the lineage chain walks back to the upload');
    // The version the full run made: its score and size, as Postgres has them.
    const [made] = await s.query('SELECT major, minor, score, size_bytes FROM package_versions WHERE run_id = $1', [runFull]);
    const madeCells = await page.locator(`[data-testid=versions] tr:has(a:text-is("${made?.major}.${made?.minor}")) td`).allTextContents();
    t.equal(madeCells[3], '0.875', `version ${made?.major}.${made?.minor} shows the score its full run gave it`);
    const size = /^([\d.]+) (B|KiB|MiB)$/.exec(madeCells[4] ?? '');
    const shown = size ? Number(size[1]) * 1024 ** ['B', 'KiB', 'MiB'].indexOf(size[2]!) : NaN;
    t.ok(made?.size_bytes > 0 && Math.abs(shown - made?.size_bytes) <= made?.size_bytes * 0.05, `and its size (${madeCells[4]} for ${made?.size_bytes} bytes)`);
    t.equal((await page.locator('[data-testid=versions] tr:has(a:text-is("1.0")) td').allTextContents())[3], '', 'the uploaded 1.0 has no score');
    await shot(page, 'package-versions');

    await page.goto(`${base}/#/datasets`);
    await page.click('[data-testid=datasets] a:text("d")');
    await page.waitForSelector('[data-testid=dataset-tree] [data-file="b.csv"]');
    t.match(await page.textContent('[data-testid=dataset-tree]'), /sub\/[\s\S]*b\.csv 8 B/, 'the tree with folders and sizes');
    await shot(page, 'dataset-tree');
    t.equal((await get('/api/datasets/od/files', member)).status, 404, 'another project\'s dataset: 404, as a missing one');

    await page.goto(`${base}/#/projects`);
    await page.waitForSelector('[data-testid=projects] a:text("vision")');
    const cells = await page.locator('[data-testid=projects] tr:has(a:text("vision")) td').allTextContents();
    t.same(cells.slice(4, 6), ['4', '2'], 'its caps');
    t.ok(cells.slice(1, 4).every((c) => /^\d+$/.test(c)), 'and its usage (running, GPUs held, queued)');
    t.equal(await page.locator('[data-testid=projects] a:text("other")').count(), 0, 'only its own project');
    await shot(page, 'projects');

    await page.goto(`${base}/#/schedules`);
    await page.waitForSelector('[data-testid=schedules] a:text("nightly")');
    t.match(await page.textContent('[data-testid=schedules]'), /0 3 29 2 \*/, 'the schedule and its cron');
    await shot(page, 'schedules');

    await page.goto(`${base}/#/events`);
    await page.waitForSelector('[data-testid=events] td:text("run.succeeded")');
    t.equal(await page.locator(`[data-testid=events] a:text("${runB}")`).count(), 0, 'no event of another project');
    await page.selectOption('select[name=kind]', 'schedule');
    // The unfiltered table may still be on screen for a moment (it holds schedule.created too): wait for
    // the filtered one, in which no run event is left; a filter that did nothing times out here.
    const filtered = await page.locator('[data-testid=events] td:text("run.succeeded")').first().waitFor({ state: 'detached', timeout: 15_000 }).then(() => true, () => false);
    t.ok(filtered, 'filtered by kind group: the run events are gone');
    await page.waitForSelector('[data-testid=events] td:text("schedule.created")');
    t.equal(await page.locator('[data-testid=events] td:text("run.succeeded")').count(), 0, 'and only schedule events are listed');
    await shot(page, 'events');
  });

  await t.test('an admin drains the agent from the Agents page', async (t) => {
    await admin.goto(`${base}/#/agents`);
    await admin.click('[data-testid=drain-agent1]');
    await admin.waitForSelector('[data-agent=agent1] .status:text-matches("draining|offline")');
    t.pass('the agent is draining');
    const [row] = await s.query("SELECT status FROM agents WHERE name = 'agent1'");
    t.match(row?.status, /draining|offline/, 'in Postgres too');
  });

  await page.goto(`${base}/#/runs`);
  await page.click('button:text("Sign out")');
  await page.waitForSelector('input[name=token]');
  t.equal(await page.evaluate(() => sessionStorage.length), 0, 'signing out forgets the token');
  await shot(page, 'sign-in');
  t.same(cspViolations, [], 'no Content-Security-Policy violation on any page');
  t.same(pageErrors, [], 'no uncaught error on any page');
});
