// rawGet (shared/raw-get.ts): a GET whose body is read into memory the caller reuses, used for a large
// object's ranges. Checked against small servers of Node's own (plain TCP, http and TLS) that send their
// responses in the pieces a test chooses: a head split over reads, an S3 error, a body cut short, a sink
// that holds the socket, an abort, and TLS with the second connection resuming the first's session.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { rawGet, HttpStatusError, ShortBody, type BodySink } from '../../shared/raw-get.js';
import { isPermanentStorageError } from '../../shared/storage.js';
import { makePki } from '../helpers/pki.js';

/** A server that answers each connection's request with `reply`, which writes to the socket as it likes. */
async function server(reply: (sock: net.Socket, request: string) => void, secure?: { key: string; cert: string }): Promise<{ url: (path: string) => string; requests: string[]; resumed: boolean[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const resumed: boolean[] = []; // per TLS connection: whether it resumed a session
  const onConn = (sock: net.Socket) => {
    if (sock instanceof tls.TLSSocket) resumed.push(sock.isSessionReused());
    let req = '';
    sock.on('data', (d: Buffer) => {
      req += d.toString('latin1');
      if (!req.includes('\r\n\r\n')) return;
      requests.push(req);
      reply(sock, req);
    });
    sock.on('error', () => {});
  };
  const srv = secure ? tls.createServer({ key: readFileSync(secure.key), cert: readFileSync(secure.cert) }, onConn) : net.createServer(onConn);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    url: (p) => `${secure ? 'https' : 'http'}://127.0.0.1:${port}${p}`,
    requests,
    resumed,
    close: () => new Promise<void>((r) => srv.close(() => r())),
  };
}

/** A sink that keeps what comes in, reading into one reused buffer of `size` bytes, and checks every view lies in it. */
function keeper(size = 4096): BodySink & { got: Buffer[]; all(): Buffer; outside: number } {
  const mem = Buffer.alloc(size);
  const got: Buffer[] = [];
  const s = {
    got,
    outside: 0,
    next: () => mem,
    body: (b: Buffer) => {
      if (b.buffer !== mem.buffer) s.outside++;
      got.push(Buffer.from(b)); // the memory is read into again
    },
    all: () => Buffer.concat(got),
  };
  return s;
}

const head = (status: string, len: number, extra = '') => `HTTP/1.1 ${status}\r\nContent-Length: ${len}\r\n${extra}Connection: close\r\n\r\n`;

t.test('the body lands in the sink\'s own memory, the head split over reads; the request carries the headers asked', async (t) => {
  const body = randomBytes(100_000);
  const srv = await server((sock) => {
    const h = head('206 Partial Content', body.length, 'Content-Range: bytes 0-99999/100000\r\n');
    sock.write(h.slice(0, 10));
    setTimeout(() => { sock.write(h.slice(10) + body.subarray(0, 7).toString('latin1'), 'latin1'); setTimeout(() => sock.end(body.subarray(7)), 20); }, 20);
  });
  t.teardown(() => srv.close());
  const sink = keeper();
  const heads: string[] = [];
  const res = await rawGet(srv.url('/b/k?X-Amz-Signature=abc'), { Range: 'bytes=0-99999' }, [206], { ...sink, head: (st, h) => heads.push(`${st} ${h.get('content-range')}`) });
  t.equal(res.status, 206);
  t.same(heads, ['206 bytes 0-99999/100000'], 'the head was given before the body');
  t.ok(sink.all().equals(body), 'the body whole and in order');
  t.equal(sink.outside, 0, 'every view of the body lies in the memory the sink gave');
  t.ok(sink.got.length > 1, `read in pieces (${sink.got.length})`);
  t.match(srv.requests[0], /^GET \/b\/k\?X-Amz-Signature=abc HTTP\/1\.1\r\n/, 'the path and query as given');
  t.match(srv.requests[0], /\r\nRange: bytes=0-99999\r\n/);
  t.match(srv.requests[0], /\r\nHost: 127\.0\.0\.1:\d+\r\n/);
});

t.test('an unexpected status is an error with the S3 Code, judged as minio-js\'s are', async (t) => {
  const xml = '<?xml version="1.0"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>';
  const srv = await server((sock) => sock.end(head('412 Precondition Failed', xml.length) + xml));
  t.teardown(() => srv.close());
  const sink = keeper();
  const err = await rawGet(srv.url('/x'), {}, [206], sink).catch((e: unknown) => e);
  t.ok(err instanceof HttpStatusError);
  t.match(err, { status: 412, code: 'PreconditionFailed', message: /HTTP 412 PreconditionFailed: At least one/ });
  t.ok(isPermanentStorageError(err), 'permanent: no retry can change it');
  t.equal(sink.got.length, 0, 'an error\'s body never reaches the sink');

  const srv5 = await server((sock) => sock.end(head('503 Service Unavailable', 0)));
  t.teardown(() => srv5.close());
  const err5 = await rawGet(srv5.url('/x'), {}, [206], keeper()).catch((e: unknown) => e);
  t.match(err5, { status: 503, code: 'HTTP503' });
  t.notOk(isPermanentStorageError(err5), 'a 503 without a Code is retried');
});

t.test('an unexpected status with a large body (the whole object, a Range ignored) fails without reading it to its end', async (t) => {
  const size = 64 * 1024 * 1024;
  let sent = 0;
  let closedAt = -1;
  const srv = await server((sock) => {
    sock.write(head('200 OK', size));
    const chunk = Buffer.alloc(64 * 1024, 1);
    sock.on('close', () => { closedAt = sent; });
    const more = () => { while (sent < size && !sock.destroyed) { sent += chunk.length; if (!sock.write(chunk)) { sock.once('drain', more); return; } } if (sent >= size) sock.end(); };
    more();
  });
  t.teardown(() => srv.close());
  const sink = keeper();
  const err = await rawGet(srv.url('/x'), { Range: 'bytes=0-1023' }, [206], sink).catch((e: unknown) => e);
  t.match(err, { status: 200, code: 'HTTP200' });
  t.equal(sink.got.length, 0, 'nothing of it reached the sink');
  for (const until = Date.now() + 5000; closedAt < 0 && Date.now() < until;) await new Promise((r) => setTimeout(r, 10));
  t.ok(closedAt >= 0 && closedAt < size, `the connection was closed before the server had sent it all (${closedAt} of ${size} bytes)`);
});

t.test('a body cut short is a ShortBody, with what came kept; more than the Content-Length is refused', async (t) => {
  const srv = await server((sock) => { sock.write(head('206 Partial Content', 1000) + 'x'.repeat(400)); setTimeout(() => sock.destroy(), 20); });
  t.teardown(() => srv.close());
  const sink = keeper();
  const err = await rawGet(srv.url('/x'), {}, [206], sink).catch((e: unknown) => e);
  t.ok(err instanceof ShortBody, String(err));
  t.match(err, { message: /after 400 of 1000 bytes/ });
  t.equal(sink.all().length, 400, 'the 400 bytes that came were given');

  const over = await server((sock) => sock.end(head('206 Partial Content', 10) + 'y'.repeat(20)));
  t.teardown(() => over.close());
  await t.rejects(rawGet(over.url('/x'), {}, [206], keeper()), /more than its Content-Length 10/);

  const chunked = await server((sock) => sock.end('HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'));
  t.teardown(() => chunked.close());
  await t.rejects(rawGet(chunked.url('/x'), {}, [206], keeper()), /without a Content-Length/);
});

t.test('a sink that holds the socket gets nothing more until it lets go, and then the rest', async (t) => {
  const body = randomBytes(2 * 1024 * 1024);
  const srv = await server((sock) => sock.end(Buffer.concat([Buffer.from(head('200 OK', body.length)), body])));
  t.teardown(() => srv.close());
  const sink = keeper(64 * 1024);
  let holding = false;
  let whileHeld = 0;
  let holds = 0;
  const res = await rawGet(srv.url('/x'), {}, [200], {
    next: sink.next,
    body: (b) => {
      if (holding) whileHeld++;
      void sink.body(b);
      if (sink.got.length % 8 !== 0) return;
      holding = true;
      holds++;
      return new Promise<void>((r) => setTimeout(() => { holding = false; r(); }, 5));
    },
  });
  t.equal(res.status, 200);
  t.ok(holds > 1, `held ${holds} times`);
  t.equal(whileHeld, 0, 'no body came while the sink held the socket');
  t.ok(sink.all().equals(body), 'and all of it came after');
});

t.test('a body all in while the sink still holds it is a success, however long the sink takes or the server closes', async (t) => {
  const pki = makePki();
  const body = randomBytes(200_000);
  const reply = (sock: net.Socket) => sock.end(Buffer.concat([Buffer.from(head('200 OK', body.length)), body]));
  for (const secure of [false, true]) {
    const srv = await server(reply, secure ? { key: pki.key, cert: pki.cert } : undefined);
    t.teardown(() => srv.close());
    const sink = keeper(1024 * 1024);
    // Every read is held 150 ms: longer than the idle time, and the server has closed long before.
    const res = await rawGet(srv.url('/x'), {}, [200], { next: sink.next, body: (b) => { void sink.body(b); return new Promise<void>((r) => setTimeout(r, 150)); } },
      { idleMs: 60, ...(secure ? { tls: { ca: readFileSync(pki.ca) } } : {}) });
    t.equal(res.status, 200, `${secure ? 'TLS' : 'TCP'}: resolved`);
    t.ok(sink.all().equals(body), `${secure ? 'TLS' : 'TCP'}: the body whole`);
  }
});

t.test('an abort ends the GET with its reason; a sink that throws ends it with its error', async (t) => {
  const srv = await server((sock) => sock.write(head('200 OK', 1_000_000) + 'z'.repeat(1000))); // and then nothing
  t.teardown(() => srv.close());
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('stopped by the test')), 50);
  await t.rejects(rawGet(srv.url('/x'), {}, [200], keeper(), { signal: ac.signal }), /stopped by the test/);
  await t.rejects(rawGet(srv.url('/x'), {}, [200], { next: () => Buffer.alloc(1024), body: () => { throw new Error('the disk is full'); } }), /the disk is full/);
  await t.rejects(rawGet(srv.url('/x'), {}, [200], keeper(), { idleMs: 100 }), /nothing received for 0.1 s/, 'a stalled connection fails rather than waits');
});

t.test('over TLS: the body the same way, and the next GET resumes the session', async (t) => {
  const pki = makePki();
  const body = randomBytes(300_000);
  const srv = await server((sock) => sock.end(Buffer.concat([Buffer.from(head('200 OK', body.length)), body])), { key: pki.key, cert: pki.cert });
  t.teardown(() => srv.close());
  const trust = { ca: readFileSync(pki.ca) };
  for (let i = 0; i < 3; i++) {
    const sink = keeper(64 * 1024);
    await rawGet(srv.url('/x'), {}, [200], sink, { tls: trust });
    t.ok(sink.all().equals(body), `GET ${i + 1}: the body whole`);
    t.equal(sink.outside, 0, 'read into the sink\'s memory');
  }
  t.equal(srv.requests.length, 3);
  t.same(srv.resumed.slice(1), [true, true], `the later connections resumed the first one's session (${srv.resumed.join(', ')})`);
  await t.rejects(rawGet(srv.url('/x'), {}, [200], keeper()), /self.signed|unable to verify|certificate/i, 'a server the system does not trust is refused (no session made under other trust is resumed)');
});
