// The agent's own samples of a running attempt, every --sys-sample-seconds, shipped with the run's metrics
// (agent/run-metrics.ts) under "sys/" names, which train.py cannot write:
//   sys/gpuN_util_pct, sys/gpuN_mem_mb   each of the run's GPUs (N: its place in the run's list), from
//                                        nvidia-smi by UUID (so another run's GPUs are never read)
//   sys/cpu_pct                          the run's cgroup CPU time over the interval (100 = one core)
//   sys/mem_mb                           the run's cgroup memory (memory.current)
//   sys/read_mb, sys/write_mb            bytes its cgroup read and wrote so far (io.stat)
// A source that is not there (no cgroup v2 for the run, no nvidia-smi) gives no series, not zeros.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const MIB = 1024 * 1024;

export interface SamplerOptions {
  /** The run's cgroup (v2) folder, or null. */
  cgroupDir: string | null;
  /** The agent's nvidia-smi (shared by its runs), or null; with the run's GPUs' UUIDs, in the run's order. */
  gpuUse: GpuUseReader | null;
  gpuUuids: readonly string[];
  everyMs: number;
  onSample: (values: Record<string, number>) => void;
}

/** What nvidia-smi says of each GPU: UUID → utilisation % and memory used (MiB). */
export function parseGpuUse(csv: string): Map<string, { util: number; memMb: number }> {
  const out = new Map<string, { util: number; memMb: number }>();
  for (const line of csv.split('\n')) {
    const [uuid, util, mem] = line.split(',').map((x) => x.trim());
    if (uuid && Number.isFinite(Number(util)) && Number.isFinite(Number(mem)) && util !== '' && mem !== '') out.set(uuid, { util: Number(util), memMb: Number(mem) });
  }
  return out;
}

type GpuUse = Map<string, { util: number; memMb: number }>;

function gpuUse(nvidiaSmi: string): Promise<GpuUse> {
  return new Promise((resolve) => {
    execFile(nvidiaSmi, ['--query-gpu=uuid,utilization.gpu,memory.used', '--format=csv,noheader,nounits'], { timeout: 5000 },
      (err, stdout) => resolve(err ? new Map() : parseGpuUse(stdout)));
  });
}

/**
 * One nvidia-smi for all of an agent's runs: it reports every GPU at once, so the runs' samplers share an
 * answer up to `maxAgeMs` old, and one query in flight. Each run asking for its own was a process spawned
 * per run and per sample: in a burst of short runs, the first sample of each run alone cost the agent's
 * thread 9 ms a run (forking a large Node process), and on a busy GPU box nvidia-smi itself is slow.
 */
export class GpuUseReader {
  #last: { use: Promise<GpuUse>; at: number | null } | null = null;
  /** How many times nvidia-smi was run (tests). */
  queries = 0;
  constructor(readonly nvidiaSmi: string, readonly maxAgeMs = 1000) {}

  read(): Promise<GpuUse> {
    const last = this.#last;
    if (last && (last.at === null || Date.now() - last.at < this.maxAgeMs)) return last.use;
    this.queries++;
    const entry: { use: Promise<GpuUse>; at: number | null } = { use: gpuUse(this.nvidiaSmi), at: null };
    void entry.use.then(() => { entry.at = Date.now(); });
    this.#last = entry;
    return entry.use;
  }
}

async function cgroupUse(dir: string): Promise<{ cpuUsec: number | null; memBytes: number | null; read: number | null; written: number | null }> {
  const text = (f: string) => readFile(path.join(dir, f), 'utf8').catch(() => null);
  const [cpu, mem, io] = await Promise.all([text('cpu.stat'), text('memory.current'), text('io.stat')]);
  const usage = cpu ? /^usage_usec (\d+)$/m.exec(cpu) : null;
  let read: number | null = null;
  let written: number | null = null;
  if (io !== null) {
    read = 0; written = 0;
    for (const m of io.matchAll(/rbytes=(\d+)/g)) read += Number(m[1]);
    for (const m of io.matchAll(/wbytes=(\d+)/g)) written += Number(m[1]);
  }
  return { cpuUsec: usage ? Number(usage[1]) : null, memBytes: mem !== null && mem.trim() !== '' ? Number(mem) : null, read, written };
}

/**
 * Samples every `everyMs` until the returned stop() is called. The first sample is one interval in, with
 * the CPU figure over that interval (the cgroup's CPU time is read at once as its baseline): a sample at
 * the start said nothing (no memory, I/O or CPU yet) and cost every run, however short, an AppendMetrics
 * call and its ten statements; in a burst of short runs that was a quarter of the scheduler's statements.
 */
export function startSampler(o: SamplerOptions): () => void {
  let last: { at: number; cpuUsec: number } | null = null;
  let stopped = false;
  const sample = async (ship = true) => {
    const values: Record<string, number> = {};
    if (o.cgroupDir) {
      const c = await cgroupUse(o.cgroupDir);
      const now = Date.now();
      if (c.cpuUsec !== null) {
        if (last) values['sys/cpu_pct'] = Math.round(((c.cpuUsec - last.cpuUsec) / 1000 / Math.max(1, now - last.at)) * 1000) / 10;
        last = { at: now, cpuUsec: c.cpuUsec };
      }
      if (c.memBytes !== null) values['sys/mem_mb'] = Math.round((c.memBytes / MIB) * 10) / 10;
      if (c.read !== null) values['sys/read_mb'] = Math.round((c.read / MIB) * 100) / 100;
      if (c.written !== null) values['sys/write_mb'] = Math.round((c.written / MIB) * 100) / 100;
    }
    if (!ship) return;
    if (o.gpuUse && o.gpuUuids.length) {
      const use = await o.gpuUse.read();
      o.gpuUuids.forEach((uuid, i) => {
        const g = use.get(uuid);
        if (g) { values[`sys/gpu${i}_util_pct`] = g.util; values[`sys/gpu${i}_mem_mb`] = g.memMb; }
      });
    }
    if (!stopped && Object.keys(values).length) o.onSample(values);
  };
  if (o.cgroupDir) void sample(false);
  const timer = setInterval(() => { void sample(); }, o.everyMs);
  return () => { stopped = true; clearInterval(timer); };
}
