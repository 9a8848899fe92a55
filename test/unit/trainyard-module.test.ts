// The `import trainyard` module (agent/harness/lib/trainyard.py) on its own, with the Python the agent
// uses: what it refuses, what it writes to TRAINYARD_METRICS_FILE (one JSON line per flush, NaN and
// infinities as strings), that log() only buffers (nothing is written before a flush), and that it does
// nothing outside a run.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { root, tempDir } from '../helpers/stack.js';

const lib = path.join(root, 'agent', 'harness', 'lib');

function py(code: string, env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('python3', ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(lib)})\n${code}`], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('what log() and summary() refuse', async (t) => {
  const r = py(`
import trainyard
def tryit(f):
    try:
        f(); print("accepted")
    except (ValueError, TypeError) as e:
        print(type(e).__name__, e)
tryit(lambda: trainyard.log(step=-1, loss=1.0))
tryit(lambda: trainyard.log(step=True, loss=1.0))
tryit(lambda: trainyard.log(step=1.5, loss=1.0))
tryit(lambda: trainyard.log(step=3, loss="high"))
tryit(lambda: trainyard.log(step=3, loss=True))
tryit(lambda: trainyard.log(**{"sys/gpu0_util_pct": 1.0}))
tryit(lambda: trainyard.log(**{"a,b": 1.0}))
tryit(lambda: trainyard.log(**{"perte_é": 1.0}))
tryit(lambda: trainyard.log(step=3, loss=1.0))
tryit(lambda: trainyard.log(step=3, loss=2.0))
tryit(lambda: trainyard.log(step=2, loss=2.0))
tryit(lambda: trainyard.summary(best=0.5))
`);
  t.equal(r.code, 0, r.stderr);
  t.same(r.stdout.trim().split('\n'), [
    'ValueError trainyard: step must be a non-negative integer, got -1',
    'ValueError trainyard: step must be a non-negative integer, got True',
    'ValueError trainyard: step must be a non-negative integer, got 1.5',
    'TypeError trainyard: loss must be a number, got str',
    'TypeError trainyard: loss must be a number, got bool',
    "ValueError trainyard: 'sys/gpu0_util_pct' is not a metric name (ASCII letters, digits, _ . - / : @; at most 200; not sys/...)",
    "ValueError trainyard: 'a,b' is not a metric name (ASCII letters, digits, _ . - / : @; at most 200; not sys/...)",
    "ValueError trainyard: 'perte_é' is not a metric name (ASCII letters, digits, _ . - / : @; at most 200; not sys/...)",
    'accepted',
    'ValueError trainyard: step 3 of loss is not above its previous step 3',
    'ValueError trainyard: step 2 of loss is not above its previous step 3',
    'accepted',
  ]);
});

t.test('log() buffers; a flush writes one JSON line; NaN and infinities as strings', async (t) => {
  const file = path.join(tempDir(), 'metrics.jsonl');
  writeFileSync(file, '');
  const r = py(`
import os, trainyard
trainyard._FLUSH_SECONDS = 3600  # the thread never flushes in this test: only the explicit ones
for i in range(1000):
    trainyard.log(step=i, loss=1.0 / (i + 1))
print(os.path.getsize(os.environ["TRAINYARD_METRICS_FILE"]))
trainyard.flush()
trainyard.log(step=1000, loss=float("nan"), up=float("inf"), down=float("-inf"))
trainyard.log(lr=0.1)
trainyard.summary(best=7)
trainyard.flush()
`, { TRAINYARD_METRICS_FILE: file });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), '0', 'nothing is written while training logs: log() only appends to a list');
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown[][]);
  t.equal(lines.length, 2, 'one line per flush (the exit flush had nothing left)');
  t.equal(lines[0]!.length, 1000);
  t.same(lines[0]![999]!.slice(0, 3), ['loss', 999, 0.001]);
  t.same(lines[1]!.map((p) => p.slice(0, 3)), [['loss', 1000, 'NaN'], ['up', 1000, 'Infinity'], ['down', 1000, '-Infinity'], ['lr', null, 0.1], ['=best', null, 7]]);
});

t.test('outside a run (no TRAINYARD_METRICS_FILE) the calls do nothing and exit cleanly', async (t) => {
  const r = py('import trainyard\ntrainyard.log(step=1, loss=0.5)\ntrainyard.summary(a=1)\ntrainyard.flush()\nprint("ok")');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'ok');
  t.equal(r.stderr, '');
});
