// The leader's storage housekeeping (issue 21): one scheduler at a time (the placer's leader) finishes the
// deletes that a scheduler left half done (rows marked deleting whose objects or rows are still there:
// storage/deletion.ts) and applies each project's retention (storage/retention.ts), every
// --storage-janitor-interval-s seconds, a batch at a time.
import { sql } from 'kysely';
import { periodic } from '../periodic.js';
import { finishDataset, finishRun, finishVersion, type DeletionDeps } from './deletion.js';
import { applyRetention } from './retention.js';

/** Rows marked longer ago than this are taken as left by a scheduler that stopped (a live delete takes less). */
const STALE_MARK_S = 30;
/** Per pass, of each kind. */
const BATCH = 100;

/** Finishes up to BATCH interrupted deletes of each kind; says how many it finished. */
export async function finishInterrupted(d: DeletionDeps, olderThanS = STALE_MARK_S): Promise<number> {
  const stale = sql<boolean>`deleting_at < now() - make_interval(secs => ${olderThanS})`;
  let n = 0;
  for (const r of await d.db.selectFrom('runs').select('id').where('deleting_at', 'is not', null).where(stale).limit(BATCH).execute()) {
    if (await finishRun(d, r.id)) n++;
  }
  for (const v of await d.db.selectFrom('package_versions').select(['package', 'major', 'minor']).where('deleting_at', 'is not', null).where(stale).limit(BATCH).execute()) {
    if (await finishVersion(d, v.package, v.major, v.minor)) n++;
  }
  for (const ds of await d.db.selectFrom('datasets').select('name').where('deleting_at', 'is not', null).where(stale).limit(BATCH).execute()) {
    if (await finishDataset(d, ds.name)) n++;
  }
  return n;
}

export class StorageJanitor {
  readonly #abort = new AbortController();
  #done: Promise<void> | null = null;

  constructor(private readonly deps: DeletionDeps & { intervalS: number; isLeader: () => boolean }) {}

  start(): void {
    const d = this.deps;
    this.#done = periodic('storage housekeeping', d.log, this.#abort.signal, () => d.intervalS * 1000, async () => {
      if (!d.isLeader()) return;
      const finished = await finishInterrupted(d);
      const kept = await applyRetention(d, BATCH);
      if (finished || kept.runs || kept.versions) d.log.info({ finished, retention: kept }, 'storage housekeeping deleted');
    });
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }
}
