// The agent's calls to the scheduler (agent/link.ts) against a real gRPC server that answers as told:
// a permanent refusal ends a call after one try, a transient failure is retried with backoff until the
// signal fires, and the signal also cancels a call in flight (a stopping agent does not wait out the
// 15 s deadline of a scheduler that does not answer).
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, toGrpcStatus } from '../../shared/errors.js';
import { Link } from '../../agent/link.js';

type Answer = 'ok' | 'hang' | { code: grpc.status } | TrainyardError;

async function fakeScheduler(t: Test, answer: () => Answer) {
  const calls: number[] = [];
  const server = new grpc.Server();
  const proto = loadProto();
  const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'x' } as grpc.ServiceError);
  server.addService(proto.trainyard.v1.AgentLink.service, {
    Register: unimplemented, Heartbeat: unimplemented, ReportStatus: unimplemented, AppendLogs: unimplemented,
    FinishAttempt: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      calls.push(Date.now());
      const a = answer();
      if (a === 'hang') return; // never answers
      if (a === 'ok') return cb(null, { status: 'Successful', output_version: '1.1' });
      if (a instanceof TrainyardError) return cb(toGrpcStatus(a) as grpc.ServiceError);
      cb({ code: a.code, details: `status ${a.code}` } as grpc.ServiceError);
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const link = new Link(`127.0.0.1:${port}`);
  t.teardown(() => { link.close(); server.forceShutdown(); });
  return { link, calls };
}

const finishReq = { run_id: 'run_x', lease: 1, outcome: 'Succeeded', reason: '' };

for (const [name, answer] of [
  ['STALE_LEASE (ABORTED)', new TrainyardError(ErrorCodes.StaleLease, 'not the current attempt')],
  ['STORAGE_REJECTED (FAILED_PRECONDITION)', new TrainyardError(ErrorCodes.StorageRejected, 'NoSuchKey: package.zip')],
  ['INVALID_ARGUMENT', new TrainyardError(ErrorCodes.InvalidArgument, 'bad outcome')],
  ['NOT_FOUND', new TrainyardError(ErrorCodes.NotFound, 'no such run')],
  ['a bare FAILED_PRECONDITION status', { code: grpc.status.FAILED_PRECONDITION }],
] as const) {
  t.test(`a permanent refusal, ${name}, ends the finish report after one try`, async (t) => {
    const { link, calls } = await fakeScheduler(t, () => answer);
    const never = new AbortController().signal;
    const started = Date.now();
    const err = await link.finishAttempt(finishReq, never).catch((e: unknown) => e);
    t.ok(err instanceof TrainyardError, 'a TrainyardError');
    if (answer instanceof TrainyardError) t.equal((err as TrainyardError).code, answer.code, 'with the scheduler\'s code');
    t.equal(calls.length, 1, 'one try');
    t.ok(Date.now() - started < 2000, 'at once');
  });
}

t.test('transient failures (UNAVAILABLE, STORAGE_ERROR, INTERNAL) are retried with backoff, then the answer comes', async (t) => {
  const answers: Answer[] = [
    { code: grpc.status.UNAVAILABLE }, new TrainyardError(ErrorCodes.StorageError, 'slow down'), new TrainyardError(ErrorCodes.Internal, 'db hiccup'), 'ok',
  ];
  const { link, calls } = await fakeScheduler(t, () => answers.shift()!);
  const retried: string[] = [];
  const res = await link.finishAttempt(finishReq, new AbortController().signal, (err) => retried.push(String((err as Error).message)));
  t.equal(res.status, 'Successful');
  t.equal(calls.length, 4);
  t.equal(retried.length, 3, 'each retry is told');
  const gaps = calls.slice(1).map((c, i) => c - calls[i]!);
  t.ok(gaps[2]! >= gaps[0]!, `delays grow: ${gaps.join(', ')} ms`);
});

t.test('a call the scheduler cancelled (its shutdown cut it) is retried, not taken for a refusal', async (t) => {
  const answers: Answer[] = [{ code: grpc.status.CANCELLED }, 'ok'];
  const { link, calls } = await fakeScheduler(t, () => answers.shift()!);
  const res = await link.finishAttempt(finishReq, new AbortController().signal);
  t.equal(res.status, 'Successful', 'the success report goes through on the next try');
  t.equal(calls.length, 2, 'two tries');
});

t.test('a scheduler that keeps failing: retried until the agent gives up, then the call ends with the signal', async (t) => {
  const { link, calls } = await fakeScheduler(t, () => ({ code: grpc.status.UNAVAILABLE }));
  const giveUp = new AbortController();
  setTimeout(() => giveUp.abort(new Error('agent stopping')), 1500);
  const started = Date.now();
  await t.rejects(link.finishAttempt(finishReq, giveUp.signal), { message: 'agent stopping' });
  t.ok(Date.now() - started < 2500, 'ends soon after the signal');
  t.ok(calls.length >= 2 && calls.length <= 12, `${calls.length} tries in 1.5 s: backing off, not spinning`);
});

t.test('the signal cancels a call the scheduler never answers', async (t) => {
  const { link, calls } = await fakeScheduler(t, () => 'hang');
  const giveUp = new AbortController();
  setTimeout(() => giveUp.abort(new Error('agent stopping')), 300);
  const started = Date.now();
  await t.rejects(link.finishAttempt(finishReq, giveUp.signal), { message: 'agent stopping' });
  t.ok(Date.now() - started < 2000, `ended ${Date.now() - started} ms after the start, not after the 15 s deadline`);
  t.equal(calls.length, 1);
});
