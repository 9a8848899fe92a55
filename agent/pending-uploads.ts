// --max-pending-uploads: how many attempts of this agent may upload their outputs (and report their end)
// after giving their GPUs and slot back (README, "GPUs freed at process exit"). An attempt whose process tree
// has exited takes a place here before it tells the scheduler "released"; when every place is taken it waits,
// still holding its GPUs, until one is given back. So a slow store can hold at most this many finished runs'
// outputs on the agent's disk and its uplink while new runs start, never an unbounded pile of them. 0: no
// place at all, an attempt keeps its GPUs until its upload and end report are done (the old behaviour).

/** A place taken; give it back (once) when the attempt's end is reported. */
export type PendingPlace = { release(): void };

export class PendingUploads {
  #taken = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(readonly max: number) {}

  /** Attempts uploading with their capacity released now. */
  get taken(): number { return this.#taken; }

  /**
   * A place, as soon as one is free; null at once when there are none (max 0), or when `signal` aborts
   * first (the attempt was stopped while it waited: it keeps its GPUs until its end, as before).
   */
  async take(signal: AbortSignal): Promise<PendingPlace | null> {
    if (this.max <= 0 || signal.aborted) return null;
    while (this.#taken >= this.max) {
      const freed = await new Promise<boolean>((resolve) => {
        const wake = () => { signal.removeEventListener('abort', abort); resolve(true); };
        const abort = () => { const i = this.#waiting.indexOf(wake); if (i >= 0) this.#waiting.splice(i, 1); resolve(false); };
        this.#waiting.push(wake);
        signal.addEventListener('abort', abort, { once: true });
      });
      if (!freed) return null;
    }
    this.#taken++;
    let given = false;
    return {
      release: () => {
        if (given) return;
        given = true;
        this.#taken--;
        this.#waiting.shift()?.();
      },
    };
  }
}
