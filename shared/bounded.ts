// Bounded concurrency: at most `limit` calls of `fn` in flight. A transfer of many small objects is
// latency-bound (one round trip each), so several at once fill the link; a bound keeps sockets, file
// descriptors and memory finite however many items there are.
import { getMaxListeners, setMaxListeners } from 'node:events';

/**
 * Calls `fn` on every item, at most `limit` at once, and resolves with the results in the items' order.
 * The first failure stops new calls (those in flight are awaited, so nothing is left running) and is
 * thrown; an aborted signal stops new calls the same way.
 */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>, signal?: AbortSignal): Promise<R[]> {
  // Each call in flight may listen on the signal (a stream pipeline, a retry's wait): Node's default of 10
  // listeners would warn of a leak that is none.
  if (signal) setMaxListeners(Math.max(getMaxListeners(signal), limit * 4 + 10), signal);
  const out = new Array<R>(items.length);
  let next = 0;
  let failed: { err: unknown } | null = null;
  const worker = async () => {
    while (!failed && next < items.length) {
      if (signal?.aborted) { failed ??= { err: signal.reason }; break; }
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed) throw (failed as { err: unknown }).err;
  return out;
}

/**
 * Sets `key` in `map` as its most recent entry (a Map iterates in insertion order) and drops the oldest
 * beyond `max`: a cache of the last `max` things seen, for what is cheap to make again.
 */
export function setRecent<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  for (const k of map.keys()) {
    if (map.size <= max) break;
    map.delete(k);
  }
}
