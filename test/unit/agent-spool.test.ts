// An attempt's spool (agent/spool.ts) and the run's supervisor (agent/harness/trainyard_supervisor.py):
// the supervisor writes the run's output and its exit to the spool, exits as the run did, and outlives
// whoever reads it; a spool read again from its acknowledged position gives every line the number it had
// the first time (what a restarted agent relies on to ship each line once).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { posFile, readPos, Spool, type SpoolStream } from '../../agent/spool.js';
import { supervisorPath } from '../../agent/run-env.js';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'ty-spool-'));

/** Reads a spool as the agent does, numbering each record as a LogShipper would (from `seq`). */
function reader(file: string, seq = 0) {
  const got: { seq: number; stream: SpoolStream; text: string }[] = [];
  const spool = new Spool({ file, give: (stream, text) => { got.push({ seq: ++seq, stream, text }); return seq; } });
  return { spool, got };
}

t.test('the supervisor spools the output, then the exit, and exits as the run did', async (t) => {
  const dir = tmp();
  const file = path.join(dir, 'a.spool');
  writeFileSync(file, '');
  const r = spawnSync('python3', ['-I', '-S', supervisorPath(), file, '--', '/bin/sh', '-c', 'echo one; echo two >&2; printf "three\\r\\n"; printf four; exit 3']);
  t.equal(r.status, 3, 'its exit code is the run\'s');
  t.equal(r.stdout.length + r.stderr.length, 0, 'nothing of the run on the supervisor\'s own output');
  const records = readFileSync(file, 'utf8').split('\n');
  // Each stream in its order (the two pipes are read as their bytes come: across them, as they came).
  t.same(records.filter((r) => r.startsWith('o ')), ['o one', 'o three', 'o four'], 'stdout, a record a line (CRLF ends a line too)');
  t.same(records.filter((r) => r.startsWith('e ')), ['e two'], 'stderr');
  t.same(records.slice(-2), ['x {"code": 3, "signal": null}', ''], 'the exit last');
  writeFileSync(file, '');
  const k = spawnSync('python3', ['-I', '-S', supervisorPath(), file, '--', '/bin/sh', '-c', 'echo up; kill -TERM $$']);
  t.equal(k.signal, 'SIGTERM', 'killed by the run\'s signal');
  t.match(readFileSync(file, 'utf8'), /x \{"code": null, "signal": "SIGTERM"\}\n$/);
});

t.test('read again from the acknowledged position, every line keeps its number', async (t) => {
  const dir = tmp();
  const file = path.join(dir, 'a.spool');
  const first = reader(file);
  first.spool.create();
  first.spool.write('system', '[trainyard] attempt 1\nwith a newline');
  writeFileSync(file, 'o line 1\ne warn 1\n', { flag: 'a' });
  first.spool.write('system', 'checkpoint');
  writeFileSync(file, 'o line 2\no line 3\n', { flag: 'a' });
  await first.spool.readNow();
  t.same(first.got.map((g) => `${g.seq} ${g.stream} ${g.text}`), [
    '1 system [trainyard] attempt 1\nwith a newline', '2 stdout line 1', '3 stderr warn 1', '4 system checkpoint', '5 stdout line 2', '6 stdout line 3',
  ]);
  first.spool.acked(3);
  await until(() => existsSync(posFile(file)));
  t.same(await readPos(file), { offset: Buffer.byteLength(readFileSync(file, 'utf8').split('\n').slice(0, 3).join('\n') + '\n'), seq: 3 });
  // The agent dies; the run goes on writing; a new agent reads on from the position.
  await first.spool.close(false);
  writeFileSync(file, 'o line 4\nx {"code": 0, "signal": null}\n', { flag: 'a' });
  const pos = await readPos(file);
  const second = reader(file, pos.seq);
  second.spool.reopen(pos);
  second.spool.write('system', 'taken over');
  await second.spool.readNow();
  t.same(second.got.map((g) => `${g.seq} ${g.text}`), ['4 checkpoint', '5 line 2', '6 line 3', '7 line 4', '8 taken over'], 'the same numbers for the same lines');
  t.same(second.spool.exit, { code: 0, signal: null }, 'the exit the supervisor wrote');
  await second.spool.close(true);
  t.notOk(existsSync(file) || existsSync(posFile(file)), 'removed at the end');
});

t.test('a spool that is a link is refused, never followed', async (t) => {
  const dir = tmp();
  const target = path.join(dir, 'target');
  writeFileSync(target, 'keep');
  const { symlinkSync } = await import('node:fs');
  symlinkSync(target, path.join(dir, 'a.spool'));
  const { spool } = reader(path.join(dir, 'a.spool'));
  t.throws(() => spool.create(), /ELOOP/);
  t.equal(readFileSync(target, 'utf8'), 'keep');
});

async function until(probe: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !probe(); i++) await new Promise((r) => setTimeout(r, 20));
}
