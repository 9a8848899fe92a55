// `trainyard doctor --storage` (issue 21): the bucket against the rows that point into it.
//
//   orphan_object      an object under packages/, datasets/ or runs/ that no row points at: a zip no version
//                      names, a file of a dataset that has no row (nor a running first push's claim), an
//                      object under runs/RUN/ of a run that has no row. --repair removes it, but only once
//                      it is older than the grace (default 1 h): a package push stores its zip before its
//                      row, so a young orphan may be an upload in flight.
//   missing_object     a row whose object is gone: a version's zip, a dataset with no file left, a run's
//                      recorded output. --repair deletes the version or dataset row (the three steps of
//                      storage/deletion.ts, refused while a live run or a schedule needs it) and drops a
//                      run's missing outputs from its record.
//   unfinished_delete  a row marked deleting long enough ago that its delete was interrupted; the leader
//                      finishes these by itself, --repair does it now.
//
// Keys outside those three prefixes are not Trainyard's to judge and are left alone.
import { sql } from 'kysely';
import type { StorageFinding } from '../../shared/proto.js';
import { withStorageRetry } from '../../shared/storage.js';
import { errorMessage } from '../../shared/errors.js';
import { finishDataset, finishRun, finishVersion, markDataset, markVersions, type DeletionDeps } from './deletion.js';
import { pushStaleBefore } from '../datasets/generation.js';

/** Orphans younger than this are kept by --repair unless the request says otherwise. */
export const DEFAULT_GRACE_S = 3600;
/** A mark older than this is an interrupted delete (as storage/janitor.ts takes it). */
const STALE_MARK_S = 30;
const BY = 'doctor --storage (its object was gone)';

interface Listed { key: string; size: number; lastModified: Date }

async function listAll(d: DeletionDeps, prefix: string): Promise<Listed[]> {
  return withStorageRetry(`list ${prefix}`, async () => {
    const out: Listed[] = [];
    for await (const o of d.minio.listObjectsV2(d.settings.bucket, prefix, true) as AsyncIterable<{ name?: string; size?: number; lastModified?: Date }>) {
      if (o.name) out.push({ key: o.name, size: o.size ?? 0, lastModified: o.lastModified ?? new Date(0) });
    }
    return out;
  }, d.storageRetry);
}

const finding = (f: Partial<StorageFinding> & { kind: string; detail: string }): StorageFinding =>
  ({ key: '', row: '', repaired: false, size_bytes: 0, ...f });

export async function auditStorage(d: DeletionDeps, o: { repair: boolean; graceS: number }): Promise<StorageFinding[]> {
  const graceS = o.graceS > 0 ? o.graceS : DEFAULT_GRACE_S;
  // The rows first, then the bucket: an object stored after the rows were read is younger than any grace.
  const versions = await d.db.selectFrom('package_versions').select(['package', 'major', 'minor', 'object_key', 'deleting_at']).execute();
  // A running first push's claim keeps its files from being orphans; a dead push's (stale) does not. The
  // claims before the datasets: a first push's end writes its row and drops its claim in one commit, which
  // read between the two would leave its dataset in neither (and its files taken for orphans).
  const claims = await d.db.selectFrom('dataset_claims').select('name')
    .where('claimed_at', '>=', pushStaleBefore).execute();
  const datasets = await d.db.selectFrom('datasets').select(['name', 'deleting_at']).execute();
  const runs = await d.db.selectFrom('runs').select(['id', 'attempt', 'outputs', 'deleting_at']).execute();
  const objects = [...await listAll(d, 'packages/'), ...await listAll(d, 'datasets/'), ...await listAll(d, 'runs/')];
  const keys = new Set(objects.map((x) => x.key));
  const out: StorageFinding[] = [];
  const now = Date.now();

  const versionKeys = new Set(versions.map((v) => v.object_key));
  const datasetNames = new Set([...datasets.map((x) => x.name), ...claims.map((c) => c.name)]);
  const runIds = new Set(runs.map((r) => r.id));
  const pointedAt = (key: string): boolean => {
    const [top, name] = key.split('/');
    if (top === 'packages') return versionKeys.has(key);
    if (top === 'datasets') return datasetNames.has(name ?? '');
    return runIds.has(name ?? '');
  };
  for (const obj of objects) {
    if (pointedAt(obj.key)) continue;
    const ageS = Math.floor((now - obj.lastModified.getTime()) / 1000);
    const f = finding({ kind: 'orphan_object', key: obj.key, size_bytes: obj.size, detail: `no row points at it (${ageS} s old)` });
    if (o.repair && ageS < graceS) f.detail += `; kept: younger than the grace of ${graceS} s (it may be an upload in flight)`;
    else if (o.repair) {
      try {
        await withStorageRetry(`remove ${obj.key}`, () => d.minio.removeObject(d.settings.bucket, obj.key), d.storageRetry);
        f.repaired = true;
      } catch (err) { f.detail += `; could not remove it: ${errorMessage(err)}`; }
    }
    out.push(f);
  }

  const tryRepair = async (f: StorageFinding, fix: () => Promise<unknown>) => {
    if (!o.repair) return;
    try { await fix(); f.repaired = true; } catch (err) { f.detail += `; not repaired: ${errorMessage(err)}`; }
  };
  for (const v of versions) {
    if (v.deleting_at || keys.has(v.object_key)) continue;
    const version = `${v.major}.${v.minor}`;
    const f = finding({ kind: 'missing_object', key: v.object_key, row: `package ${v.package} ${version}`, detail: 'the version\'s zip is not in the bucket' });
    await tryRepair(f, async () => { await markVersions(d.db, v.package, version, BY); await finishVersion(d, v.package, v.major, v.minor); });
    out.push(f);
  }
  // Each dataset that has a file, found once (not a scan of every object per dataset).
  const holding = new Set(objects.filter((x) => x.key.startsWith('datasets/')).map((x) => x.key.split('/')[1]));
  for (const ds of datasets) {
    const prefix = `datasets/${ds.name}/`;
    if (ds.deleting_at || holding.has(ds.name)) continue;
    const f = finding({ kind: 'missing_object', key: prefix, row: `dataset ${ds.name}`, detail: 'the dataset has no file left in the bucket' });
    await tryRepair(f, async () => { await markDataset(d.db, ds.name, BY); await finishDataset(d, ds.name); });
    out.push(f);
  }
  for (const r of runs) {
    if (r.deleting_at || !r.outputs) continue;
    const prefix = `runs/${r.id}/attempt-${r.attempt}/`;
    const missing = r.outputs.filter((x) => !keys.has(prefix + x.path));
    for (const m of missing) out.push(finding({ kind: 'missing_object', key: prefix + m.path, row: `run ${r.id}`, detail: 'a recorded output of the run is not in the bucket' }));
    if (missing.length === 0 || !o.repair) continue;
    // The record keeps what is still there; the quota stops counting what is gone. One guarded statement.
    const paths = missing.map((m) => m.path);
    // Guarded: the run as read (not being deleted, the same attempt) and the paths still recorded, so a
    // second --repair at once does not take their bytes off twice; repaired only if it changed the row.
    const { numAffectedRows } = await sql`UPDATE runs SET
        outputs = (SELECT coalesce(jsonb_agg(x), '[]'::jsonb) FROM jsonb_array_elements(outputs) x WHERE NOT (x->>'path' = ANY(${paths}::text[]))),
        output_bytes = greatest(output_bytes - ${missing.reduce((n, m) => n + m.size, 0)}, 0)
      WHERE id = ${r.id} AND attempt = ${r.attempt} AND deleting_at IS NULL
        AND EXISTS (SELECT 1 FROM jsonb_array_elements(outputs) x WHERE x->>'path' = ANY(${paths}::text[]))`.execute(d.db);
    if (Number(numAffectedRows ?? 0) > 0) for (const f of out.slice(-missing.length)) f.repaired = true;
  }

  const staleBefore = now - STALE_MARK_S * 1000;
  const unfinished = [
    ...runs.filter((r) => r.deleting_at && r.deleting_at.getTime() < staleBefore).map((r) => ({ row: `run ${r.id}`, key: `runs/${r.id}/`, fix: () => finishRun(d, r.id) })),
    ...versions.filter((v) => v.deleting_at && v.deleting_at.getTime() < staleBefore)
      .map((v) => ({ row: `package ${v.package} ${v.major}.${v.minor}`, key: v.object_key, fix: () => finishVersion(d, v.package, v.major, v.minor) })),
    ...datasets.filter((x) => x.deleting_at && x.deleting_at.getTime() < staleBefore).map((x) => ({ row: `dataset ${x.name}`, key: `datasets/${x.name}/`, fix: () => finishDataset(d, x.name) })),
  ];
  for (const u of unfinished) {
    const f = finding({ kind: 'unfinished_delete', key: u.key, row: u.row, detail: 'marked deleting, not finished (the placing scheduler finishes it)' });
    await tryRepair(f, u.fix);
    out.push(f);
  }
  return out;
}
