// Issue 23, notifications: webhooks delivered at least once from the Postgres outbox to a real local
// receiver (which deduplicates on the delivery id), across a scheduler kill -9 mid-delivery; signatures
// verify; a failing receiver is retried with backoff and every try is logged with its code; SSRF refusals
// at create and at delivery; who may manage, list and see hooks. Real scheduler, agent, CLI and receiver.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { quickTrainPy, until, failingTrainPy as failing } from '../helpers/packages.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

// The receiver is on loopback: the scheduler must be told it may post there (what an admin would say).
const schedulerEnv = { TRAINYARD_WEBHOOK_ALLOW_HOSTS: '127.0.0.1', TRAINYARD_WEBHOOK_TIMEOUT_MS: '1500', TRAINYARD_WEBHOOK_BACKOFF_MS: '200' };

t.test('webhooks', async (t) => {
  const s = await Stack.create(t, { schedulerEnv, agents: [] });
  const secret = 'a-test-secret-of-some-length-0123456789';
  const secretFile = path.join(tempDir(), 'hook.secret');
  writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  const receiver = await new WebhookReceiver(secret).start();
  t.teardown(() => receiver.stop());
  const token = async (project: string, role: string) => (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  const as = (tok: string) => async (args: string[]) => {
    const r = await s.cli([...args, '--json', '--token', tok]);
    let out: any = null;
    let err: any = null;
    try { out = r.code === 0 ? JSON.parse(r.stdout) : null; } catch { /* not JSON */ }
    try { err = r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null; } catch { /* not JSON */ }
    return { code: r.code, out, err, stdout: r.stdout, stderr: r.stderr };
  };
  const A = as(await token('alpha', 'member'));
  const ok = async (p: ReturnType<typeof A>) => { const x = await p; if (x.code !== 0) throw new Error(x.stderr); return x.out; };
  const push = (name: string, py = quickTrainPy) => ok(A(['package', 'push', writeTree(tempDir(), { 'train.py': py }), '--name', name]));
  const deliveries = async (name: string, who = A) => (await ok(who(['webhooks', 'deliveries', name, '--limit', '1000']))) as any[];

  await t.test('each event delivered once per delivery id across a scheduler kill -9; signatures verify', async (t) => {
    const created = await ok(A(['webhooks', 'create', 'alerts', '--url', receiver.url, '--events', 'package.pushed,run.failed,run.succeeded', '--secret', `@${secretFile}`]));
    t.equal(created.webhook.project, 'alpha', 'a member\'s hook is its project\'s');
    t.same(created.webhook.events, ['package.pushed', 'run.failed', 'run.succeeded']);
    // Fleet-wide: an admin's, for agent events.
    const fleet = await s.cliJson(['webhooks', 'create', 'fleet', '--url', receiver.url, '--events', 'agent.lost,agent.drained', '--secret', `@${secretFile}`]);
    t.equal(fleet.webhook.project, '', 'an admin without --project makes a fleet-wide hook');

    // Events made by real changes: pushes, a run that succeeds and one that fails, an agent lost.
    await s.startAgent('worker');
    await push('pa');
    await push('pfail', failing);
    await ok(A(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'da']));
    const good = await ok(A(['run', 'train', '--package', 'pa', '--dataset', 'da', '--wait']));
    t.equal(good.status, 'Successful');
    const bad = await A(['run', 'train', '--package', 'pfail', '--dataset', 'da', '--wait']);
    t.equal(bad.code, 1, 'the failing run fails');
    const doomed = await s.startAgent('doomed');
    await doomed.kill9();
    await until('agent.lost delivered', async () => receiver.unique().some((r) => r.event === 'agent.lost'));
    // No agent is left to be lost while no scheduler runs: the events below are all the test makes.
    await s.daemons.find((d) => d.name === 'worker')!.stop();

    // The receiver now holds what it gets, unanswered: the scheduler dies with deliveries in flight.
    await until('the first deliveries', async () => receiver.unique().length >= 4);
    receiver.mode = 'hold';
    const heldFrom = receiver.received.length;
    await push('pb');
    await push('pc');
    await until('a delivery held in flight', async () => receiver.held > 0);
    const [first] = s.daemons.filter((d) => d.name.startsWith('scheduler'));
    await first!.kill9();
    const inFlight = receiver.received.slice(heldFrom).map((r) => r.delivery);
    t.ok(inFlight.length > 0, 'the scheduler was mid-delivery');
    receiver.release();
    // Another scheduler, at the same address (the agent and the CLI find it there), with the same settings.
    await s.startScheduler(schedulerEnv, s.schedulerAddress);

    const wantedNow = () => s.query<{ id: string; kind: string; subject: string }>(
      "SELECT id::text, kind, subject FROM events WHERE (project = 'alpha' AND kind IN ('package.pushed', 'run.failed', 'run.succeeded')) OR kind IN ('agent.lost', 'agent.drained') ORDER BY id");
    await until('every event delivered', async () => {
      const rows = await s.query("SELECT state FROM webhook_deliveries WHERE state <> 'delivered'");
      return rows.length === 0 && receiver.unique().length >= (await wantedNow()).length;
    });
    const wanted = await wantedNow();
    t.ok(wanted.some((e) => e.kind === 'agent.lost' && e.subject === 'doomed'), 'the lost agent made its event');
    t.ok(wanted.some((e) => e.kind === 'run.failed') && wanted.some((e) => e.kind === 'run.succeeded'), 'both runs ended with their events');
    t.ok(wanted.filter((e) => e.kind === 'package.pushed').length === 4, 'four pushes, two of them delivered across the kill');
    const unique = receiver.unique();
    const eventIds = unique.map((r) => String(r.json.event.id)).sort();
    t.same(eventIds, wanted.map((e) => e.id).sort(), 'each event arrived, under one delivery id each');
    t.equal(new Set(eventIds).size, eventIds.length, 'no event under two delivery ids');
    t.ok(receiver.received.every((r) => r.verified), 'every signature verifies with the hook\'s secret');
    t.ok(receiver.received.every((r) => r.json.delivery_id === r.delivery), 'the body names the delivery id of its header');
    const resent = inFlight.filter((id) => receiver.received.filter((r) => r.delivery === id).length >= 2);
    t.ok(resent.length > 0, 'what was in flight at the kill was delivered again, under the same id (at least once)');
    // Outside the kill, one POST per delivery: the deliveries made before it were each sent once.
    const before = receiver.received.filter((r) => !inFlight.includes(r.delivery));
    t.equal(new Set(before.map((r) => r.delivery)).size, before.length, 'in the normal case each delivery is POSTed once');
    const log = await deliveries('alerts');
    t.ok(log.every((d) => d.state === 'delivered' && d.tries.at(-1).status === 200), 'the log: each delivered, last answer 200');
    const fleetLog = await s.cliJson<any[]>(['webhooks', 'deliveries', 'fleet']);
    t.ok(fleetLog.some((d) => d.kind === 'agent.lost' && d.subject === 'doomed'), 'the fleet hook got agent.lost');
  });

  await t.test('a failing receiver is retried with backoff, and every try is logged with its code', async (t) => {
    receiver.script = [500, 500];
    const before = receiver.received.length;
    await push('pd');
    const d = await until('the retried delivery', async () => (await deliveries('alerts')).find((x) => x.subject === 'pd' && x.state === 'delivered'));
    t.same(d.tries.map((a: any) => a.status), [500, 500, 200], 'two 500s, then accepted');
    t.equal(d.attempts, 3);
    t.ok(Date.parse(d.tries[2].at) - Date.parse(d.tries[0].at) >= 200 + 400, 'the tries were spaced by the backoff (200 ms, then 400 ms)');
    const got = receiver.received.slice(before).filter((r) => r.json?.event?.subject === 'pd');
    t.equal(new Set(got.map((r) => r.delivery)).size, 1, 'every try carried the same delivery id');
    // webhooks test: a 503 is reported (exit 1) and logged; the delivery stays pending to be tried again.
    receiver.script = [503];
    const tried = await A(['webhooks', 'test', 'alerts']);
    t.equal(tried.code, 1, 'a test that is not accepted exits 1');
    const test = (await deliveries('alerts')).find((x) => x.kind === 'webhook.test');
    t.equal(test.tries[0].status, 503, 'the test try is in the log with its code');
    await until('the test delivery retried and accepted', async () => (await deliveries('alerts')).find((x) => x.kind === 'webhook.test' && x.state === 'delivered'));
    // Slack's body.
    await ok(A(['webhooks', 'create', 'chat', '--url', receiver.url, '--events', 'package.pushed', '--format', 'slack', '--secret', `@${secretFile}`]));
    await push('pe');
    const slack = await until('a slack body', async () => receiver.received.find((r) => typeof r.json?.text === 'string' && r.json.text.includes('pe')));
    t.match(slack.json.text, /package\.pushed pe \(project alpha\)/, 'a Slack-compatible {"text"}');
    t.ok(slack.verified, 'signed too');
  });

  await t.test('who may: readers and other projects cannot create, list, see or touch hooks; no answer holds a secret', async (t) => {
    const R = as(await token('alpha', 'reader'));
    const B = as(await token('beta', 'member'));
    const create = ['webhooks', 'create', 'x', '--url', receiver.url, '--events', 'run.failed'];
    t.equal((await R(create)).err?.code, 'PERMISSION_DENIED', 'a reader cannot create');
    t.equal((await R(['webhooks', 'list'])).err?.code, 'PERMISSION_DENIED', 'a reader cannot list');
    for (const verb of ['deliveries', 'test', 'delete']) t.equal((await R(['webhooks', verb, 'alerts'])).err?.code, 'PERMISSION_DENIED', `a reader cannot ${verb}`);
    t.equal((await B([...create, '--project', 'alpha'])).err?.code, 'PERMISSION_DENIED', 'another project\'s member cannot create in alpha');
    t.same((await B(['webhooks', 'list'])).out, [], 'another project lists none of alpha\'s hooks');
    for (const verb of ['deliveries', 'test', 'delete']) {
      const r = await B(['webhooks', verb, 'alerts']);
      t.equal(r.err?.code, 'NOT_FOUND', `another project: ${verb} alpha's hook is NOT_FOUND`);
      t.equal(r.err?.message, 'webhook "alerts" not found', '... as a missing one');
    }
    t.equal((await B(['webhooks', 'deliveries', 'fleet'])).err?.code, 'NOT_FOUND', 'a member does not see the fleet-wide hook');
    t.equal((await A(['webhooks', 'create', 'f2', '--url', receiver.url, '--events', 'agent.lost'])).err?.code, 'INVALID_ARGUMENT', 'a project\'s hook cannot get fleet events');
    const bad = await A(['webhooks', 'create', 'x', '--url', receiver.url, '--events', 'run.exploded']);
    t.match(bad.err?.message, /"run.exploded" is not an event kind/, 'event kinds are checked against the list');
    const listed = await A(['webhooks', 'list']);
    t.same(listed.out.map((w: any) => w.name), ['alerts', 'chat'], 'a member lists its project\'s hooks');
    const all = await s.cli(['webhooks', 'list', '--json']);
    t.notMatch(all.stdout + listed.stdout + (await A(['webhooks', 'deliveries', 'alerts'])).stdout, secret, 'no list or log holds the secret');
    t.equal((await B(['webhooks', 'list'])).out.length, 0);
    await ok(A(['webhooks', 'delete', 'chat']));
    t.same((await A(['webhooks', 'list'])).out.map((w: any) => w.name), ['alerts'], 'a member deletes its hook');
  });

  await t.test('SSRF: loopback, link-local and private addresses are refused at create and at delivery', async (t) => {
    // A scheduler that allows no private address (the default) replaces the one that allowed loopback.
    for (const d of s.daemons.filter((x) => x.name.startsWith('scheduler') && x.alive)) await d.stop();
    await s.startScheduler({ TRAINYARD_WEBHOOK_TIMEOUT_MS: '1500', TRAINYARD_WEBHOOK_BACKOFF_MS: '200' }, s.schedulerAddress);
    const refusedUrls: [string, RegExp][] = [
      [receiver.url, /127\.0\.0\.1, a loopback address: refused/],
      ['http://localhost:9/x', /is (127\.0\.0\.1|::1), a loopback address: refused/],
      ['http://[::1]:9/x', /::1, a loopback address/],
      ['http://[::ffff:127.0.0.1]:9/x', /loopback/],
      ['http://169.254.169.254/latest/meta-data/', /link-local \(cloud metadata\)/],
      ['http://10.1.2.3/x', /a private address/],
      ['http://192.168.0.1/x', /a private address/],
      ['http://0.0.0.0:9/x', /this network/],
      ['ftp://example.com/x', /only http and https/],
      ['http://user:pw@example.com/x', /no credentials in the URL/],
    ];
    for (const [url, why] of refusedUrls) {
      const r = await A(['webhooks', 'create', 'evil', '--url', url, '--events', 'run.failed']);
      t.equal(r.err?.code, 'INVALID_ARGUMENT', `${url}: refused`);
      t.match(r.err?.message ?? '', why, `${url}: says why`);
    }
    t.same((await A(['webhooks', 'list'])).out.map((w: any) => w.name), ['alerts'], 'a refused create leaves nothing');
    // "alerts" was allowed when made; its address is checked again at each delivery.
    const before = receiver.received.length;
    await push('pf');
    const d = await until('the refused delivery', async () => (await deliveries('alerts')).find((x) => x.subject === 'pf' && x.attempts >= 2));
    t.equal(d.state, 'pending', 'refused, and left to retry (DNS may change back)');
    t.match(d.tries[0].error, /127\.0\.0\.1, a loopback address: refused/, 'the log says why');
    t.equal(d.tries[0].status, 0, 'no response code: nothing was sent');
    t.equal(receiver.received.slice(before).filter((r) => r.json?.event?.subject === 'pf').length, 0, 'the receiver got nothing');
  });
});
