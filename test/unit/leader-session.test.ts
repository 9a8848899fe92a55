// The placer's leader session (scheduler/placement/leader-session.ts) over a connection that stops
// answering without closing, as a partition or a vanished host leaves it (issue 20, suspected): before,
// a statement on it waited for ever (the kernel's keepalive, about two hours), so the scheduler kept
// believing it led and the server kept its advisory lock. Now a statement gives up after the session's
// query timeout, closing never waits on the silent peer, and the server is told to drop the session soon.
import t from 'tap';
import net from 'node:net';
import { connectLeaderSession } from '../../scheduler/placement/leader-session.js';

const target = new URL(process.env.TRAINYARD_TEST_DATABASE_URL ?? process.env.TRAINYARD_DATABASE_URL ?? 'postgres://trainyard:trainyard@127.0.0.1:5432/trainyard');

/** A TCP proxy to Postgres that can go silent: from then on it forwards nothing, and closes nothing. */
async function proxy(): Promise<{ port: number; silence: () => void; close: () => void }> {
  let silent = false;
  const sockets: net.Socket[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.push(client, upstream);
    client.on('data', (c) => { if (!silent) upstream.write(c); });
    upstream.on('data', (c) => { if (!silent) client.write(c); });
    for (const s of [client, upstream]) s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    silence: () => { silent = true; },
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
}

t.test('a leader session whose connection goes silent fails its statements and closes anyway', async (t) => {
  const p = await proxy();
  t.teardown(p.close);
  const url = new URL(target.toString());
  url.port = String(p.port);
  url.hostname = '127.0.0.1';
  const session = await connectLeaderSession(url.toString(), { queryTimeoutMs: 1500 });
  t.same((await session.query<{ ok: number }>('SELECT 1 AS ok')).rows, [{ ok: 1 }], 'it works while the connection answers');
  const show = async (name: string) => (await session.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name];
  t.equal(await show('statement_timeout'), '1500ms', 'the server ends a statement that runs too long');
  t.equal(await show('tcp_keepalives_idle'), '10', 'the server probes a silent peer after 10 s');
  t.equal(await show('tcp_user_timeout'), '30000', 'and gives up on unacknowledged data after 30 s');
  p.silence();
  await t.rejects(session.query('SELECT 1'), /timeout/i, 'a statement on the silent connection fails instead of waiting for ever');
  await session.close();
  t.pass('closing did not wait on the silent peer');
});
