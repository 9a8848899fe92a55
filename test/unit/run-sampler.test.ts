// The agent's samples of its runs (agent/run-sampler.ts) ask nvidia-smi once for all runs: concurrent
// samples share one query, an answer is reused only while it is younger than the reader's limit, and
// each run's sampler still gets its own GPUs' figures. A real process stands in for nvidia-smi and counts
// how often it is run.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GpuUseReader, startSampler } from '../../agent/run-sampler.js';

function fakeSmi(t: Parameters<Parameters<typeof t.test>[1]>[0], sleepS = 0) {
  const dir = mkdtempSync(path.join(tmpdir(), 'trainyard-test-smi-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const count = path.join(dir, 'count');
  const bin = path.join(dir, 'nvidia-smi');
  writeFileSync(bin, `#!/bin/sh\necho x >> ${count}\nsleep ${sleepS}\necho "GPU-a, 10, 100"\necho "GPU-b, 20, 200"\n`, { mode: 0o755 });
  return { bin, runs: () => (existsSync(count) ? readFileSync(count, 'utf8').split('\n').filter(Boolean).length : 0) };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await sleep(25);
}

t.test('concurrent reads share one nvidia-smi; a fresh answer is reused, an old one is not', async (t) => {
  const smi = fakeSmi(t);
  const reader = new GpuUseReader(smi.bin, 300);
  const answers = await Promise.all([reader.read(), reader.read(), reader.read()]);
  t.equal(smi.runs(), 1, 'three samples at once: one nvidia-smi');
  for (const a of answers) t.same([...a], [['GPU-a', { util: 10, memMb: 100 }], ['GPU-b', { util: 20, memMb: 200 }]]);
  await reader.read();
  t.equal(smi.runs(), 1, 'an answer younger than the limit is reused');
  await sleep(350);
  await reader.read();
  t.equal(smi.runs(), 2, 'an older one is not');
  t.equal(reader.queries, 2);
});

t.test('a slow nvidia-smi is asked once while it answers, whatever the limit', async (t) => {
  const smi = fakeSmi(t, 0.4);
  const reader = new GpuUseReader(smi.bin, 10);
  const first = reader.read();
  await sleep(150);
  const second = reader.read();
  t.equal(await second, await first, 'the sample taken while it runs gets the same answer');
  t.equal(smi.runs(), 1, 'and starts no second process');
});

t.test('two runs\' samplers share the reader and each gets its own GPUs', async (t) => {
  const smi = fakeSmi(t);
  const reader = new GpuUseReader(smi.bin, 500);
  const got: Record<string, number>[][] = [[], []];
  const stops = [['GPU-b'], ['GPU-a']].map((uuids, i) => startSampler({ cgroupDir: null, gpuUse: reader, gpuUuids: uuids, everyMs: 250, onSample: (v) => got[i]!.push(v) }));
  // Until both have sampled (a loaded machine may take a while to run the script).
  for (let i = 0; i < 100 && got.some((g) => g.length === 0); i++) await sleep(50);
  for (const stop of stops) stop();
  t.same(got.map((g) => g[0]), [{ 'sys/gpu0_util_pct': 20, 'sys/gpu0_mem_mb': 200 }, { 'sys/gpu0_util_pct': 10, 'sys/gpu0_mem_mb': 100 }], 'each run sees its own GPU as its gpu0');
  t.ok(reader.queries <= Math.max(...got.map((g) => g.length)), `both runs' samples came from one nvidia-smi each time (${reader.queries} for ${got.map((g) => g.length).join(' and ')}; each run ran its own before)`);
});

t.test('the first sample is one interval in, with the CPU used over that interval', async (t) => {
  const cg = mkdtempSync(path.join(tmpdir(), 'trainyard-test-cg-'));
  t.teardown(() => rmSync(cg, { recursive: true, force: true }));
  writeFileSync(path.join(cg, 'cpu.stat'), 'usage_usec 5000000\nuser_usec 1\n');
  writeFileSync(path.join(cg, 'memory.current'), String(64 * 1024 * 1024));
  const got: Record<string, number>[] = [];
  const stop = startSampler({ cgroupDir: cg, gpuUse: null, gpuUuids: [], everyMs: 1000, onSample: (v) => got.push(v) });
  t.teardown(stop);
  await sleep(150);
  t.same(got, [], 'nothing at the start (a run shorter than the interval costs no metrics call)');
  // 200 ms of CPU over the 1 s interval: 20 (100 = one core).
  writeFileSync(path.join(cg, 'cpu.stat'), 'usage_usec 5200000\nuser_usec 1\n');
  await until(() => got.length > 0);
  t.equal(got.length, 1, 'one sample after one interval');
  t.equal(got[0]!['sys/mem_mb'], 64);
  t.ok(got[0]!['sys/cpu_pct']! > 5 && got[0]!['sys/cpu_pct']! <= 22, `and its CPU figure over the interval (${got[0]!['sys/cpu_pct']})`);
});
