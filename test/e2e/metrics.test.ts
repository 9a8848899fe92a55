// Prometheus /metrics on a real stack: the scheduler's (on its HTTP port, gauges read from Postgres at
// scrape time, counters and histograms from the placer, the transitions hook, log ingest and the invariant
// sweep) and the agent's (--metrics-listen: transfers, attempts, its state).
import t from 'tap';
import { Stack, fakeGpus, tempDir, writeTree } from '../helpers/stack.js';
import { Gate, pushGated, quickTrainPy, submitGated, until, waitForAttempt } from '../helpers/packages.js';

type Series = { name: string; labels: Record<string, string>; value: number };

/** The Prometheus text format, one sample per line (`name{a="b",c="d"} 1.5`). */
function parse(text: string): Series[] {
  const out: Series[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(address: string, token?: string): Promise<{ text: string; type: string; value(name: string, labels?: Record<string, string>): number | undefined }> {
  const res = await fetch(`http://${address}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  const text = await res.text();
  const series = parse(text);
  return {
    text, type: res.headers.get('content-type') ?? '',
    value: (name, labels = {}) => series.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value,
  };
}

const MODEL = 'NVIDIA H100 80GB HBM3';

t.test('scheduler and agent metrics after a GPU run', async (t) => {
  const s = await Stack.create(t, { agents: [{ gpus: fakeGpus(2, 'm', { model: MODEL }), env: { TRAINYARD_METRICS_LISTEN: '127.0.0.1:0' } }] });
  const agentLine = await s.daemons.find((d) => d.name === 'agent1')!.waitFor((l) => l.msg === 'metrics listening');
  const agentAddress = String(agentLine.address);
  t.match(agentAddress, /^127\.0\.0\.1:\d+$/, 'the agent logged where it serves /metrics');
  const agentBefore = await scrape(agentAddress);
  for (const direction of ['download', 'upload']) {
    t.equal(agentBefore.value('trainyard_agent_transfer_errors_total', { direction }), 0, `the ${direction} error series is there from the start, at 0`);
    t.equal(agentBefore.value('trainyard_agent_transfer_bytes_total', { direction }), 0, `and the ${direction} bytes series`);
  }

  const before = await scrape(s.httpAddress, s.adminToken);
  t.match(before.type, /^text\/plain; version=0\.0\.4/, 'the Prometheus text format');
  t.equal(before.value('trainyard_agents', { status: 'online' }), 1, 'one agent online');
  t.equal(before.value('trainyard_agents', { status: 'lost' }), 0, 'every agent status has a series');
  t.equal(before.value('trainyard_gpus', { model: MODEL }), 2, 'two GPUs of its model');
  t.equal(before.value('trainyard_gpus_in_use', { model: MODEL }), 0, 'none in use');
  t.equal(before.value('trainyard_runs', { status: 'Successful', project: 'default' }), 0, 'no run yet');
  t.ok(before.value('process_resident_memory_bytes')! > 0, 'process metrics (collectDefaultMetrics)');
  t.ok(before.value('nodejs_eventloop_lag_seconds') !== undefined, 'Node.js metrics');

  // A GPU run held in train() by its gate: the gauges see it running and holding a GPU.
  await pushGated(s);
  const gate = new Gate();
  const runId = await submitGated(s, gate, ['--gpu']);
  await waitForAttempt(s, runId, 1, 'Running');
  const during = await scrape(s.httpAddress, s.adminToken);
  t.equal(during.value('trainyard_runs', { status: 'Running', project: 'default' }), 1, 'one run Running');
  t.equal(during.value('trainyard_gpus_in_use', { model: MODEL }), 1, 'one GPU in use');
  t.equal(during.value('trainyard_queue_depth', { project: 'default' }), 0, 'nothing queued');
  t.equal(during.value('trainyard_queue_oldest_wait_seconds'), 0, 'no queued run waits');
  const agentDuring = await scrape(agentAddress);
  t.equal(agentDuring.value('trainyard_agent_attempts_running'), 1, 'the agent runs one attempt');
  t.equal(agentDuring.value('trainyard_agent_gpus'), 2, 'the agent found two GPUs');
  t.equal(agentDuring.value('trainyard_agent_state', { state: 'RUNNING' }), 1, 'the agent is RUNNING');

  gate.open();
  await s.waitForStatus(runId, ['Successful']);
  const after = await scrape(s.httpAddress, s.adminToken);
  t.equal(after.value('trainyard_runs', { status: 'Successful', project: 'default' }), 1, 'trainyard_runs{status="Successful",project="default"} 1');
  t.equal(after.value('trainyard_runs', { status: 'Running', project: 'default' }), 0, 'none Running now');
  t.equal(after.value('trainyard_gpus_in_use', { model: MODEL }), 0, 'the GPU came back');
  t.equal(after.value('trainyard_placements_total'), 1, 'one placement');
  t.ok(after.value('trainyard_placement_pass_seconds_count')! >= 1, 'at least one placement pass timed');
  t.equal(after.value('trainyard_queue_wait_seconds_count'), 1, 'one queue wait observed');
  t.equal(after.value('trainyard_submit_to_start_seconds_count'), 1, 'one submit→start observed');
  t.ok(after.value('trainyard_submit_to_start_seconds_sum')! > 0, 'and it took some time');
  t.equal(after.value('trainyard_submit_to_start_seconds_bucket', { le: '+Inf' }), 1, 'in the +Inf bucket');
  const [logs] = await s.query('SELECT count(*)::int AS n FROM run_logs WHERE run_id = $1', [runId]);
  t.ok(logs!.n > 0, `the run logged ${logs!.n} lines`);
  t.equal(after.value('trainyard_log_lines_ingested_total'), logs!.n, 'every stored log line counted once');

  // The run is Successful once the scheduler committed it; the agent is done with the attempt a moment
  // later (the end report's answer, then its clean-up): the gauge must come back to 0 (or this times out).
  const agentAfter = await until('the agent to be done with the attempt', async () => {
    const m = await scrape(agentAddress);
    return m.value('trainyard_agent_attempts_running') === 0 ? m : null;
  }, 30_000);
  t.ok(agentAfter.value('trainyard_agent_transfer_bytes_total', { direction: 'download' })! > 0, 'the agent downloaded bytes (package, data)');
  t.ok(agentAfter.value('trainyard_agent_transfer_bytes_total', { direction: 'upload' })! > 0, 'and uploaded bytes (artifacts, the new version)');
  t.equal(agentAfter.value('trainyard_agent_transfer_errors_total', { direction: 'download' }), 0, 'no download failed');
  t.equal(agentAfter.value('trainyard_agent_transfer_errors_total', { direction: 'upload' }), 0, 'no upload failed');
  t.equal(agentAfter.value('trainyard_agent_attempts_total', { outcome: 'succeeded' }), 1, 'one attempt succeeded');
  t.equal(agentAfter.value('trainyard_agent_attempts_running'), 0, 'none running now');
  t.equal((await fetch(`http://${agentAddress}/other`)).status, 404, 'the agent serves nothing else');

  // An impossible state: the invariant sweep finds it, repairs it, and counts it.
  await s.query('INSERT INTO gpu_leases (agent, gpu_index, run_id, lease) VALUES ($1, 1, $2, 999999)', ['agent1', runId]);
  for (let i = 0; (await s.query('SELECT 1 FROM gpu_leases')).length > 0; i++) {
    if (i > 300) throw new Error('the sweep did not repair the leftover lease');
    await new Promise((r) => setTimeout(r, 100));
  }
  const swept = await scrape(s.httpAddress, s.adminToken);
  t.equal(swept.value('trainyard_invariant_violations_total', { kind: 'orphan_gpu_lease' }), 1, 'the violation is counted by kind');
});

// Issue 19: /metrics listed every project with its counts to anyone who reached the port (on main: 200
// without a token, and a member saw beta's name). Now it takes a token; only an admin sees every project.
t.test('the scheduler\'s /metrics takes a token, and shows a member no other project\'s name', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const token = async (project: string, role = 'member') => (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  const [alpha, beta] = [await token('alpha'), await token('beta-secret-project')];
  for (const [tok, p] of [[alpha, 'alpha'], [beta, 'beta-secret-project']] as const) {
    t.equal((await s.cli(['package', 'push', writeTree(tempDir(), { 'train.py': quickTrainPy }), '--name', `pkg-${p}`, '--token', tok])).code, 0);
    t.equal((await s.cli(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', `data-${p}`, '--token', tok])).code, 0);
    t.equal((await s.cli(['run', 'train', '--package', `pkg-${p}`, '--dataset', `data-${p}`, '--token', tok])).code, 0, `a run of ${p}, queued`);
  }
  const none = await fetch(`http://${s.httpAddress}/metrics`);
  t.equal(none.status, 401, 'no token: 401');
  t.notMatch(await none.text(), /alpha|beta/, 'and no project in the answer');
  t.equal((await fetch(`http://${s.httpAddress}/metrics`, { headers: { authorization: 'Bearer tyt_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' } })).status, 401, 'an unknown token: 401');

  const admin = await scrape(s.httpAddress, s.adminToken);
  t.equal(admin.value('trainyard_queue_depth', { project: 'alpha' }), 1, 'an admin sees alpha\'s queue');
  t.equal(admin.value('trainyard_queue_depth', { project: 'beta-secret-project' }), 1, 'and beta\'s');

  for (const [who, tok] of [['a member', alpha], ['a reader', await token('alpha', 'reader')]] as const) {
    const m = await scrape(s.httpAddress, tok);
    t.equal(m.value('trainyard_queue_depth', { project: 'alpha' }), 1, `${who} of alpha sees its project's queue`);
    t.notMatch(m.text, /beta-secret-project/, `${who} of alpha sees no other project's name`);
    t.notMatch(m.text, /project="default"/, 'not even the default project\'s');
    t.ok(m.value('trainyard_agents', { status: 'online' }) !== undefined, 'the fleet\'s series (no project in them) are there');
  }
});
