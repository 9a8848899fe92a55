// The GPU-idle gap between two runs (issue 22, "GPUs never idle between runs"): one agent with one GPU (the
// fake nvidia-smi of test/fixtures/bin: the figure is the agent's and the scheduler's, not CUDA's), two runs
// submitted together that each want that GPU, each reading a dataset (1 GiB by default) and writing an
// output (500 MB by default). The gap is the time from run 1's process exit (the agent's "exited" step:
// its cgroup empty) to run 2's train() (its first statement prints time.time()), same machine, same clock.
// Before issue 22 run 2 waited for run 1's upload and end report; now it waits for the "released" report.
// Medians over --rounds pairs, each pair on a fresh dataset name (the agent's data cache is warm after the
// first pair, as it would be for a second run of the same data on a real box).
//
//   node dist/bench/gpu-gap.js [--rounds 3] [--data-mb 1024] [--output-mb 500] [--json]
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../shared/proto.js';
import { median, startNoopTrainyard, waitEnded } from './lib.js';
import { streamOf } from '../cli/client.js';

const { values } = parseArgs({ options: {
  rounds: { type: 'string', default: '3' }, 'data-mb': { type: 'string', default: '1024' }, 'output-mb': { type: 'string', default: '500' }, json: { type: 'boolean' },
} });
const rounds = Number(values.rounds);
const dataMb = Number(values['data-mb']);
const outputMb = Number(values['output-mb']);
const MIB = 1024 * 1024;

// Reads every byte of its data, writes OUTPUT_MB into artifacts_directory; ENTERED first, as bench/lib's noop.
const trainPy = `import os, time
class Main:
    def train(self, d):
        print("ENTERED %.6f" % time.time(), flush=True)
        n = 0
        for root, _, files in os.walk(d):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    while True:
                        b = fh.read(1 << 22)
                        if not b:
                            break
                        n += len(b)
        art = os.environ["artifacts_directory"]
        os.makedirs(art, exist_ok=True)
        block = os.urandom(1 << 20)
        with open(os.path.join(art, "out.bin"), "wb") as fh:
            for _ in range(int(os.environ["OUTPUT_MB"])):
                fh.write(block)
        print("read %d bytes" % n, flush=True)
    def save(self):
        pass
`;

const s = await startNoopTrainyard({ agent: {
  TRAINYARD_NVIDIA_SMI: path.join(projectRoot(), 'test', 'fixtures', 'bin', 'nvidia-smi'),
  FAKE_NVIDIA_SMI_GPUS: '0, GPU-BENCH-0, NVIDIA H100 80GB HBM3, 81559',
  TRAINYARD_SYS_SAMPLE_SECONDS: '0',
} });
try {
  const { api, agent } = s;
  const work = mkdtempSync(path.join(os.tmpdir(), 'tybench-gap-'));
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [path.join(projectRoot(), 'bin', 'trainyard.js'), ...args, '--scheduler', s.address], { env: s.bench.env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`trainyard ${args.join(' ')}: ${r.stderr}`);
  };
  const pkg = path.join(work, 'pkg');
  mkdirSync(pkg);
  writeFileSync(path.join(pkg, 'train.py'), trainPy);
  cli(['package', 'push', pkg, '--name', 'gap']);
  // The dataset: 64 MiB files of random bytes (nothing a transfer could compress away).
  const data = path.join(work, 'data');
  mkdirSync(data);
  const block = Buffer.alloc(MIB);
  for (let f = 0, left = dataMb; left > 0; f++, left -= 64) {
    const fd = openSync(path.join(data, `part-${f}.bin`), 'w');
    for (let i = 0; i < Math.min(64, left); i++) { block.fill(Math.random() * 256); writeSync(fd, block); }
    closeSync(fd);
  }
  cli(['dataset', 'push', data, '--name', 'big']);

  // When run 2's train() began, and whether its data folder was staged while run 1 trained (--prepare-next).
  const entered = async (id: string) => {
    let prepared = false;
    for await (const l of streamOf(api.client.StreamLogs({ run_id: id, follow: false }))) {
      if (l.text.includes('(prepared while the run before it trained)')) prepared = true;
      const m = /^ENTERED (\d+\.\d+)$/.exec(l.text);
      if (m) return { at: Number(m[1]) * 1000, prepared };
    }
    throw new Error(`run ${id}: no ENTERED line`);
  };
  let prepared = 0;
  const gaps: number[] = [];
  const uploads: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const submit = () => api.submitRun({ package: 'gap', dataset: 'big', resources: { gpus: 1 }, env: { OUTPUT_MB: String(outputMb) } });
    const first = await submit();
    const second = await submit();
    for (const r of [first, second]) {
      const end = await waitEnded(api, r.id, 200);
      if (end.status !== 'Successful') throw new Error(`run ${r.id} ${end.status}: ${end.failure_reason}`);
    }
    const fin = JSON.parse(await agent!.waitFor(new RegExp(`"run":"${first.id}".*"msg":"attempt finished"`), 60_000)) as { steps: Record<string, number> };
    const exited = fin.steps.exited!;
    const e = await entered(second.id);
    gaps.push(e.at - exited);
    if (e.prepared) prepared++;
    uploads.push((fin.steps.finished ?? exited) - exited);
  }
  const r0 = (x: number) => Math.round(x);
  const summary = { rounds, dataMb, outputMb, gapMsMedian: r0(median(gaps)), gapsMs: gaps.map(r0), run2DataPrepared: prepared, run1ExitToEndReportMsMedian: r0(median(uploads)) };
  console.log(values.json ? JSON.stringify(summary)
    : `GPU idle, run 1's process exit → run 2's train(): median ${summary.gapMsMedian} ms over ${rounds} pairs (${summary.gapsMs.join(', ')} ms; run 2's data staged while run 1 trained in ${prepared}); ` +
      `run 1's exit → its end report: median ${summary.run1ExitToEndReportMsMedian} ms (${dataMb} MiB read, ${outputMb} MiB written per run)`);
} catch (err) {
  console.error(s.agent?.lines.slice(-30).join('\n'));
  throw err;
} finally {
  await s.stop();
}
process.exit(0);
