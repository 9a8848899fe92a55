// Issue 19, "Streams end when their token does": a member token's open streams (gRPC `run logs --follow`,
// `watch`, `events --follow`, and the console's SSE watch and log streams) end within 5 s of the token's
// revocation or expiry, with UNAUTHENTICATED (SSE: an `event: error` carrying the 401 body, and the next
// request is answered 401), on the scheduler that revoked it and on another one. On main they stayed open.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { status, type ClientReadableStream } from '@grpc/grpc-js';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { FakeAgent } from '../helpers/fake-agent.js';

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'trainyard.js');
const quick = 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        pass\n';
/** What the issue allows between the token's end and its streams' end. */
const WITHIN_MS = 5000;

type Ended = { how: string; code?: number; details?: string; at: number };

/** A follow stream that records how it ended (or stays undefined while open). */
function follow(st: ClientReadableStream<unknown>): { ended?: Ended } {
  const box: { ended?: Ended } = {};
  st.on('data', () => {});
  st.on('error', (e: { code?: number; details?: string }) => { box.ended ??= { how: 'error', code: e.code, details: e.details, at: Date.now() }; });
  st.on('end', () => { box.ended ??= { how: 'end', at: Date.now() }; });
  return box;
}

/** An SSE stream read with fetch: the text received, and when the body ended. */
function sse(url: string, token: string): { text: string; status?: number; endedAt?: number; opened: Promise<void> } {
  const box: { text: string; status?: number; endedAt?: number; opened: Promise<void> } = { text: '', opened: Promise.resolve() };
  box.opened = (async () => {
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    box.status = res.status;
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    void (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          box.text += dec.decode(value);
        }
      } catch { /* cut off */ }
      box.endedAt = Date.now();
    })();
    while (!box.text.includes(': open')) await new Promise((r) => setTimeout(r, 20));
  })();
  return box;
}

async function until(what: string, ok: () => boolean, deadline: number): Promise<void> {
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not within ${WITHIN_MS} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

t.test('open streams end when their token is revoked or expires, on this scheduler and another', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const second = await s.startScheduler();
  const secondAddress = String((await second.waitFor((l) => l.msg === 'listening', 30_000)).address);
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': quick }), '--name', 'quick']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
  const box = await FakeAgent.start(s, 'box');
  t.teardown(() => box.close());
  // A run that never ends (its scripted agent never reports): every follow stays open until made to end.
  const run = await s.cliJson(['run', 'train', '--package', 'quick', '--dataset', 'd']);
  await box.nextDispatch();
  const admin = s.api();
  t.teardown(() => admin.close());

  /** Opens every kind of stream with `token` (gRPC on `address`, SSE on the first scheduler). */
  const openAll = async (t: Test, token: string, address: string) => {
    const api = s.api(token, address);
    t.teardown(() => api.close());
    const grpcStreams = {
      logs: follow(api.client.StreamLogs({ run_id: run.id, follow: true }) as ClientReadableStream<unknown>),
      watch: follow(api.client.WatchRun({ id: run.id }) as ClientReadableStream<unknown>),
      events: follow(api.client.FollowEvents({}) as ClientReadableStream<unknown>),
    };
    const base = `http://${s.httpAddress}`;
    const console = { watch: sse(`${base}/api/runs/${run.id}/watch`, token), logs: sse(`${base}/api/runs/${run.id}/logs`, token) };
    await Promise.all(Object.values(console).map((c) => c.opened));
    // Every stream is open and still open a moment later (the token works until it ends).
    await api.getRun(run.id);
    for (const [name, st] of Object.entries(grpcStreams)) t.equal(st.ended, undefined, `${name}: open while the token lives`);
    return { grpcStreams, console, api };
  };

  const checkEnded = async (t: Test, label: string, o: Awaited<ReturnType<typeof openAll>>, from: number, why: RegExp, token: string) => {
    const deadline = from + WITHIN_MS;
    for (const [name, st] of Object.entries(o.grpcStreams)) {
      await until(`${label}: ${name} ended`, () => st.ended !== undefined, deadline);
      t.equal(st.ended?.code, status.UNAUTHENTICATED, `${label}: ${name} ends with UNAUTHENTICATED`);
      t.match(st.ended?.details ?? '', why, `${label}: ${name} says why`);
    }
    for (const [name, c] of Object.entries(o.console)) {
      await until(`${label}: console ${name} ended`, () => c.endedAt !== undefined, deadline);
      t.match(c.text, /event: error\ndata: \{"error":"token \w+ (was revoked|expired)[^"]*","code":"UNAUTHENTICATED"\}/, `${label}: console ${name} ends with an error event, UNAUTHENTICATED`);
    }
    const next = await fetch(`http://${s.httpAddress}/api/runs/${run.id}`, { headers: { authorization: `Bearer ${token}` } });
    t.equal(next.status, 401, `${label}: the next console request is answered 401`);
    await t.rejects(o.api.getRun(run.id), why, `${label}: the next gRPC call is refused, saying why`);
  };

  await t.test('revoked on the scheduler that serves the streams', async (t) => {
    const m = await admin.createToken({ project: 'default', role: 'member', name: 'm1', expires_in_seconds: 0 });
    const o = await openAll(t, m.token, s.schedulerAddress);
    const from = Date.now();
    await admin.revokeToken(m.info!.id);
    await checkEnded(t, 'revoked here', o, from, /was revoked/, m.token);
  });

  await t.test('revoked on scheduler 1 while the gRPC streams are held on scheduler 2', async (t) => {
    const m = await admin.createToken({ project: 'default', role: 'member', name: 'm2', expires_in_seconds: 0 });
    const o = await openAll(t, m.token, secondAddress);
    const from = Date.now();
    await admin.revokeToken(m.info!.id);
    await checkEnded(t, 'revoked elsewhere', o, from, /was revoked/, m.token);
  });

  await t.test('a token that expires', async (t) => {
    const m = await admin.createToken({ project: 'default', role: 'member', name: 'm3', expires_in_seconds: 4 });
    const o = await openAll(t, m.token, secondAddress);
    const expiresAt = Date.parse(m.info!.expires_at!);
    await checkEnded(t, 'expired', o, expiresAt, /expired at/, m.token);
  });

  await t.test('the CLI: `events --follow` ends, saying why, when its token is revoked', async (t) => {
    const m = await admin.createToken({ project: 'default', role: 'member', name: 'm4', expires_in_seconds: 0 });
    const child = spawn(process.execPath, [bin, 'events', '--follow', '--scheduler', s.schedulerAddress], {
      env: { ...process.env, TRAINYARD_TOKEN: m.token }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.teardown(() => { child.kill('SIGKILL'); });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
    // Open: it printed the events so far (the run's submission).
    await until('events --follow printed the run', () => out.includes(run.id), Date.now() + 60_000);
    const from = Date.now();
    await admin.revokeToken(m.info!.id);
    let code: number | undefined;
    void exited.then((c) => { code = c; });
    await until('events --follow exited', () => code !== undefined, from + WITHIN_MS);
    t.not(code, 0, 'it exits non-zero');
    t.match(err, /was revoked/, `it says the token was revoked: ${err.trim()}`);
  });
});
