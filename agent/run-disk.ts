// --run-disk-mb: how much a run may add to its attempt's folder while it runs. Two parts, as this box
// allows (no per-folder quota on a plain ext4 work dir): the harness sets RLIMIT_FSIZE to the limit (a
// single file cannot grow past it: the write fails with EFBIG), and this measures the whole folder (its
// blocks on disk, links not followed, through shared/anchored-dir.ts) every few seconds and once more
// when the run's processes are gone. The usage when train.py starts (the package, the data made local) is
// the baseline; growth that reaches the limit ends the run, "disk limit ...", and the agent goes on.
import { AnchoredDir } from '../shared/anchored-dir.js';

const MIB = 1024 * 1024;

export class DiskWatch {
  #timer: NodeJS.Timeout | null = null;
  #measuring = false;

  private constructor(private readonly dir: string, private readonly limitBytes: number, private readonly baseline: number) {}

  /** Measures the baseline, then checks every `everyMs`; `onOver` is called once with the reason. */
  static async start(dir: string, limitBytes: number, everyMs: number, onOver: (reason: string) => void): Promise<DiskWatch> {
    const w = new DiskWatch(dir, limitBytes, await usageOf(dir));
    let told = false;
    w.#timer = setInterval(() => {
      if (w.#measuring || told) return;
      w.#measuring = true;
      w.check().then((reason) => { if (reason && !told) { told = true; onOver(reason); } }, () => {}).finally(() => { w.#measuring = false; });
    }, everyMs);
    w.#timer.unref();
    return w;
  }

  /** The reason the run is over its limit now, or null. */
  async check(): Promise<string | null> {
    const grown = (await usageOf(this.dir)) - this.baseline;
    if (grown < this.limitBytes) return null;
    return `disk limit: the run's files came to ${(grown / MIB).toFixed(1)} MiB in its folder, reaching the agent's --run-disk-mb of ${Math.round(this.limitBytes / MIB)} MiB`;
  }

  /** Stops the sampling; resolves with the reason when the run ended over its limit. */
  async finish(): Promise<string | null> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    return this.check();
  }
}

async function usageOf(dir: string): Promise<number> {
  const root = await AnchoredDir.open(dir);
  try { return await root.usage(); } finally { await root.close(); }
}
