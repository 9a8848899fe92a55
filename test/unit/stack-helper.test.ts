// The test stack's teardown must be able to fail: a daemon that ignores SIGTERM (SIGKILLed after its
// grace) or exits non-zero fails the test, unless the test said it expected that (kill9, expectExit).
// The "daemons" here are tiny node scripts, so no Trainyard code is involved.
import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Daemon, Stack, tempDir } from '../helpers/stack.js';

const scripts = {
  // Exits 0 on SIGTERM, like a daemon that shuts down properly.
  clean: "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1000);",
  // Ignores SIGTERM: only SIGKILL ends it.
  hung: "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000);",
  // Stops on SIGTERM but reports failure.
  failing: "process.on('SIGTERM', () => process.exit(3)); setInterval(() => {}, 1000);",
} as const;

function daemon(kind: keyof typeof scripts): Daemon {
  const dir = tempDir('ty-daemon-');
  const child = spawn(process.execPath, ['-e', `console.log('{"msg":"up"}'); ${scripts[kind]}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Daemon(kind, child, path.join(dir, `${kind}.log`));
}

t.test('Daemon.stop and problems()', async (t) => {
  const clean = daemon('clean');
  await clean.waitFor((l) => l.msg === 'up');
  t.equal(await clean.stop('SIGTERM', 2000), 0);
  t.same(clean.problems(), [], 'a daemon that exits 0 on SIGTERM has no problems');

  const hung = daemon('hung');
  await hung.waitFor((l) => l.msg === 'up');
  const started = Date.now();
  t.equal(await hung.stop('SIGTERM', 500, { againAfterMs: 100 }), null, 'SIGKILLed: no exit code');
  t.ok(Date.now() - started < 5000, 'stop() does not wait past its grace');
  t.match(hung.problems(), [/hung did not exit within 500 ms of SIGTERM and was SIGKILLed/], 'the SIGKILL is reported');

  const failing = daemon('failing');
  await failing.waitFor((l) => l.msg === 'up');
  t.equal(await failing.stop(), 3);
  t.match(failing.problems(), [/failing exited 3, expected exit 0/], 'a non-zero exit is reported');

  const expected = daemon('failing').expectExit(3);
  await expected.waitFor((l) => l.msg === 'up');
  await expected.stop();
  t.same(expected.problems(), [], 'expectExit(3): exit 3 is what the test asked for');

  const wrongCode = daemon('clean').expectExit(3);
  await wrongCode.waitFor((l) => l.msg === 'up');
  await wrongCode.stop();
  t.match(wrongCode.problems(), [/exited 0, expected exit 3/], 'expectExit(3) and exit 0 is reported');

  const killed = daemon('hung');
  await killed.waitFor((l) => l.msg === 'up');
  await killed.kill9();
  t.same(killed.problems(), [], 'kill9() is the test\'s own choice');

  const alive = daemon('clean');
  t.match(alive.problems(), [/clean is still running/], 'a daemon left running is reported');
  await alive.stop();
});

t.test('Stack.destroy() fails (rejects) when a daemon had to be SIGKILLed', async (t) => {
  const s = new Stack();
  s.stopGraceMs = 1000;
  const hung = daemon('hung');
  const clean = daemon('clean');
  await Promise.all([hung.waitFor((l) => l.msg === 'up'), clean.waitFor((l) => l.msg === 'up')]);
  s.daemons.push(hung, clean);
  await t.rejects(s.destroy(), /teardown: hung did not exit within 1000 ms of SIGTERM and was SIGKILLed/);
  t.notOk(hung.alive, 'the hung daemon is gone all the same');
  t.equal(clean.child.exitCode, 0);
});

t.test('Stack.destroy() passes when every daemon stops cleanly or was killed on purpose', async (t) => {
  const s = new Stack();
  s.stopGraceMs = 1000;
  const killed = daemon('hung');
  const clean = daemon('clean');
  await Promise.all([killed.waitFor((l) => l.msg === 'up'), clean.waitFor((l) => l.msg === 'up')]);
  await killed.kill9();
  s.daemons.push(killed, clean);
  await t.resolves(s.destroy());
});
