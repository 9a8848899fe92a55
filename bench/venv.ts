// npm run bench:venv (issue 21): the environment part of a first run's Packaging phase, for a package
// needing pandas==2.2.3 and scikit-learn==1.5.2, with warm caches, three ways, interleaved, medians of
// BENCH_RUNS (default 5) each:
//   trainyard  the agent's own build as a default root agent makes it (agent/venv.ts ensureVenv,
//              --installer uv, a run uid leased from --run-uids, builds in cgroups, the --venv-cache-gb
//              cap): key, lock, uv venv, uv pip install --no-build through the shared cache, the seal
//              (every file root's, read-only) and the marker, then the package list the lineage reads
//              (agent/lineage.ts venvInfo); not root: the agent's own uid, no cgroups;
//   uv by hand `uv venv` and `uv pip install -r` into a fresh venv, the same uv and the same warm cache;
//   pip        `python -m venv` and `pip install -r` into a fresh venv, pip's own warm cache.
// Each round's requirements differ by one no-op specifier (numpy>=1.23.N, which every numpy 2 meets), so
// each is a first run (a venv key no earlier round made) while every wheel is already in the caches.
// Needs PyPI once (the warm-up rounds fill the caches). Target: trainyard within 1.5x of uv by hand.
// A second table gives the median of each step of the trainyard build (VenvOptions.onStep). A third, what
// the venv's bytecode (compiled by the agent after the venv is ready) saves each run: `import pandas,
// sklearn.linear_model` as a run uid: in each new venv right after the build, while the agent compiles
// its bytecode beside it (the venv's first run), then in trainyard's last venv with its bytecode, and in a
// copy of it without (its __pycache__ folders removed, root's like the venv: the uid finds no .pyc and
// cannot write one, so it compiles every module it imports, as every run did in a uv venv before),
// alternated, medians of BENCH_RUNS.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { backgroundCompiles, ensureVenv, type VenvOptions } from '../agent/venv.js';
import { prepareContainment } from '../agent/containment.js';
import { asUser, type RunAsUser } from '../agent/run-as.js';
import { venvInfo } from '../agent/lineage.js';
import { harnessPath } from '../agent/run-env.js';
import { VenvCacheCap } from '../agent/venv-cache-cap.js';
import { findUv } from '../agent/uv.js';
import { sharedCacheDir } from '../agent/venv-uv.js';
import { median } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const python = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim();
const base = mkdtempSync(path.join(os.tmpdir(), 'ty-bench-venv-'));
chmodSync(base, 0o755); // run uids must reach the venv dir in it
const venvDir = path.join(base, 'venvs');
const log = pino({ level: 'warn' });

let round = 0;
function requirements(): string {
  const file = path.join(base, `requirements-${++round}.txt`);
  writeFileSync(file, `pandas==2.2.3\nscikit-learn==1.5.2\nnumpy>=1.23.${10 + round}\n`);
  return file;
}

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

async function main(): Promise<void> {
  const uv = await findUv({ workDir: path.join(base, 'work'), python, pipIndexUrl: '', pipFindLinks: '', checkOwner: false, log });
  if (!uv) throw new Error('no uv: not in PATH and not installable from PyPI');
  const cache = sharedCacheDir(venvDir);
  // As the agent runs it by default: root leases a run uid per build and builds in a cgroup.
  const containment = await prepareContainment({ runUids: process.env.BENCH_RUN_UIDS ?? '61000-61063', sharedUid: 1, runAsUser: '', slots: 1, python, workDir: path.join(base, 'work'), venvDir, harness: harnessPath() }, log);
  const cap = new VenvCacheCap(venvDir, 50 * 2 ** 30);
  const steps: Record<string, number[]> = {};
  let roundSteps: Record<string, number> = {};
  const onStep = (step: string, ms: number) => { roundSteps[step] = (roundSteps[step] ?? 0) + ms; };
  let lastVenv = '';
  /** A run's `import pandas, sklearn.linear_model` in `venv`, as `user` (a run uid) where there is one. */
  const importIn = (venv: string, user: RunAsUser | null) => {
    const args = ['-c', 'import pandas, sklearn.linear_model'];
    const cmd = user ? asUser(containment.helpers, user, path.join(venv, 'bin', 'python'), args) : { command: path.join(venv, 'bin', 'python'), args };
    sh(cmd.command, cmd.args, { PATH: process.env.PATH });
  };
  const imports: Record<string, number[]> = {};
  // Each way's seconds: what it returns, or else its whole call.
  const ways: Record<string, () => Promise<number | void>> = {
    trainyard: async () => {
      const lease = containment.pool ? await containment.pool.lease() : null;
      try {
        const o: VenvOptions = {
          venvDir, python: containment.helpers.python, pythonVersion: containment.helpers.pythonVersion, pipIndexUrl: '', pipFindLinks: '', installer: 'uv', uv,
          helpers: containment.helpers, cgroupBase: containment.cgroupBase, runAs: lease?.user ?? null, holdUid: lease ? () => lease.hold() : undefined, cap, onStep,
        };
        roundSteps = {};
        const t0 = performance.now();
        const dir = await ensureVenv(o, requirements(), () => {}, new AbortController().signal);
        const t1 = performance.now();
        await venvInfo(dir);
        onStep('package list (venvInfo)', performance.now() - t1);
        onStep('ensureVenv, all', t1 - t0);
        const took = (performance.now() - t0) / 1000;
        // The venv's first run imports while its bytecode is compiled beside it (agent/venv.ts): timed, not
        // counted in the build's time; then the compile is awaited, so the next way's round has the CPU.
        const t3 = performance.now();
        importIn(dir, lease?.user ?? null);
        (imports['the first run, while the agent compiles'] ??= []).push((performance.now() - t3) / 1000);
        await backgroundCompiles();
        // The cap's measurement runs after each build, in the background (beside the run's own start):
        // awaited here, not counted, so it does not slow the next way's round.
        const t2 = performance.now();
        await cap.enforce();
        onStep('cap, after the build (background)', performance.now() - t2);
        for (const [k, ms] of Object.entries(roundSteps)) (steps[k] ??= []).push(ms);
        lastVenv = dir;
        // The uid's lease and release are the attempt's (made at the claim whatever the venv), not the build's.
        return took;
      } finally {
        await lease?.release();
      }
    },
    'uv by hand': async () => {
      const dir = mkdtempSync(path.join(venvDir, 'byhand-'));
      sh(uv, ['venv', '-q', '--python', python, '--cache-dir', cache, '--allow-existing', dir]);
      sh(uv, ['pip', 'install', '-q', '--cache-dir', cache, '--python', path.join(dir, 'bin', 'python'), '-r', requirements()]);
    },
    pip: async () => {
      const dir = mkdtempSync(path.join(base, 'pip-'));
      sh(python, ['-m', 'venv', dir]);
      sh(path.join(dir, 'bin', 'python'), ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-r', requirements()]);
    },
  };
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
  // Warm-up: fills uv's and pip's caches (downloads), not counted.
  for (const f of Object.values(ways)) await f();
  for (let i = 0; i < RUNS; i++) {
    for (const [name, f] of Object.entries(ways)) {
      const t0 = performance.now();
      const own = await f();
      times[name]!.push(own ?? (performance.now() - t0) / 1000);
    }
  }
  const uvMedian = median(times['uv by hand']!);
  console.log(`venv with pandas==2.2.3 + scikit-learn==1.5.2, warm caches, ${RUNS} runs each (interleaved), ${os.cpus().length} CPUs`);
  console.log('| how | median s | min s | max s | × uv by hand |');
  console.log('|---|---|---|---|---|');
  for (const [name, xs] of Object.entries(times)) {
    console.log(`| ${name} | ${median(xs).toFixed(2)} | ${Math.min(...xs).toFixed(2)} | ${Math.max(...xs).toFixed(2)} | ${(median(xs) / uvMedian).toFixed(2)} |`);
  }
  console.log(`\ntrainyard's build, step by step (median ms over the ${RUNS + 1} rounds, warm-up included; uid ${containment.pool ? 'leased' : 'own'}, cgroups ${containment.cgroupBase ? 'yes' : 'no'})`);
  console.log('| step | median ms |');
  console.log('|---|---|');
  for (const [k, xs] of Object.entries(steps)) console.log(`| ${k} | ${median(xs).toFixed(0)} |`);

  // What a run's imports take in that venv, as a run uid, with the bytecode the agent compiled and without.
  const lease = containment.pool ? await containment.pool.lease() : null;
  try {
    const bare = path.join(base, 'venv-without-bytecode');
    sh('cp', ['-a', lastVenv, bare]);
    sh('find', [bare, '-name', '__pycache__', '-prune', '-exec', 'rm', '-rf', '{}', '+']);
    for (let i = 0; i < RUNS; i++) {
      for (const [name, venv] of [['later runs, with the compiled bytecode', lastVenv], ['without bytecode (every run before)', bare]] as const) {
        const t0 = performance.now();
        importIn(venv, lease?.user ?? null);
        (imports[name] ??= []).push((performance.now() - t0) / 1000);
      }
    }
    console.log(`\na run's \`import pandas, sklearn.linear_model\` in trainyard's venv, as ${lease ? 'a run uid' : 'the agent\'s uid'} (medians; the first run's over the ${RUNS + 1} rounds)`);
    console.log('| bytecode | median s | min s | max s |');
    console.log('|---|---|---|---|');
    for (const [name, xs] of Object.entries(imports)) console.log(`| ${name} | ${median(xs).toFixed(2)} | ${Math.min(...xs).toFixed(2)} | ${Math.max(...xs).toFixed(2)} |`);
  } finally {
    await lease?.release();
  }
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  sh('rm', ['-rf', base]);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
