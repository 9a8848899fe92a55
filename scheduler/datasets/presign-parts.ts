// PresignDatasetParts: a large file of a dataset push is stored by the client itself, part by part, by URLs
// the scheduler signs (storage/presign.ts), instead of every byte passing through the scheduler (issue 21).
// Nothing here makes the file part of a dataset: the upload stays incomplete, invisible to runs and lists,
// until the push's stream names it and datasets/push.ts, having made all of a push's checks (the name's
// claim, the quota on what was stored, the limits), completes it. Each upload begun is recorded
// (dataset_uploads) with the bytes its URLs may store, and counts against the project's quota until the
// push completes or gives it up: an upload no push ever names (the client died between the two) holds at
// most that, and MinIO drops it with its other stale multipart uploads (after 24 hours by default).
import type { SchedulerContext } from '../context.js';
import type { PresignDatasetPartsRequest__Output, PresignDatasetPartsResponse, StorageCredentials } from '../../shared/proto.js';
import { checkName, checkRelativePath } from '../../shared/names.js';
import { ErrorCodes, TrainyardError, invalid } from '../../shared/errors.js';
import { keys, withStorageRetry } from '../../shared/storage.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorizeName } from '../auth/policy.js';
import { checkStorage, withStorageLock } from '../storage/quota.js';
import { presign } from '../storage/presign.js';
import { issueWriteOneCredentials } from '../storage/attempt-credentials.js';
import { sql } from 'kysely';
import { setRecent } from '../../shared/bounded.js';

/** S3's (and MinIO's) bounds on a multipart upload. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
const MAX_PART_BYTES = 5 * 1024 * 1024 * 1024;
const MAX_PARTS = 10_000;
/** URLs one call signs: a client asks again for the next ones, so none waits long unused. */
const MAX_URLS_PER_CALL = 64;
/** How long a URL works: long enough for 64 parts over a slow link, and dead soon after a push gives up. */
const URL_SECONDS = 3600;
/** The signing keys' life: a URL signed with them dies with them, so they outlive every URL signed with them. */
const KEY_SECONDS = 2 * URL_SECONDS;
/** Keys are used for more URLs of the same file while this much of their life is left. */
const KEY_REUSE_LEFT_MS = (KEY_SECONDS - URL_SECONDS) * 1000 - 60_000;
/** Open uploads one project may have: each a push's large file in flight. */
const MAX_OPEN_UPLOADS = 1000;
/** A recorded upload older than this is one MinIO has dropped (its stale uploads go after 24 hours). */
const UPLOAD_FORGOTTEN_AFTER = '25 hours';
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Where clients store parts, or null when the scheduler is set to take every byte itself. */
export function clientStorageUrl(ctx: SchedulerContext): string | null {
  const u = ctx.settings.clientStorageUrl.trim();
  if (u === 'none') return null;
  return u || ctx.settings.minioEndpoint;
}

/** A URL a signature can be made for: scheme://host[:port] (MinIO must see the path that was signed). */
function checkedEndpoint(url: string): string {
  let u: URL | null = null;
  try { u = new URL(url); } catch { /* below */ }
  if (!u || !/^https?:$/.test(u.protocol) || (u.pathname !== '/' && u.pathname !== '') || u.search) {
    throw new TrainyardError(ErrorCodes.Unimplemented, `this scheduler's --client-storage-url "${url}" is not http(s)://host[:port]; pushes go through the scheduler until it is`);
  }
  return url;
}

/** The parts a file of `size` bytes is cut into at `partBytes`, checked against S3's bounds. */
export function partCount(size: number, partBytes: number, what: string): number {
  if (!Number.isSafeInteger(size) || size < 1) throw invalid(`${what}: size ${size} is not a number of bytes above 0`);
  if (!Number.isSafeInteger(partBytes) || partBytes < MIN_PART_BYTES || partBytes > MAX_PART_BYTES) {
    throw invalid(`${what}: part_bytes ${partBytes} is outside ${MIN_PART_BYTES} to ${MAX_PART_BYTES} (S3's bounds on a part)`);
  }
  const n = Math.ceil(size / partBytes);
  if (n > MAX_PARTS) throw invalid(`${what}: ${n} parts of ${partBytes} bytes; an upload has at most ${MAX_PARTS} (use larger parts)`);
  return n;
}

export async function presignDatasetParts(ctx: SchedulerContext, req: PresignDatasetPartsRequest__Output, caller: Principal): Promise<PresignDatasetPartsResponse> {
  const { db, settings } = ctx;
  const endpoint = clientStorageUrl(ctx);
  if (!endpoint) throw new TrainyardError(ErrorCodes.Unimplemented, 'this scheduler stores every byte of a push itself (--client-storage-url none)');
  checkedEndpoint(endpoint);
  const name = checkName('dataset', req.dataset);
  const rel = checkRelativePath('dataset file path', req.path);
  const what = `file ${rel}`;
  const size = Number(req.size_bytes);
  const parts = partCount(size, Number(req.part_bytes), what);
  if (size > settings.maxDatasetPushMb * 1024 * 1024) {
    throw invalid(`dataset "${name}": a push may send at most ${settings.maxDatasetPushMb} MiB (--max-dataset-push-mb on the scheduler); ${rel} alone is ${Math.ceil(size / 1024 / 1024)} MiB`);
  }
  const first = req.first_part;
  const sums = req.part_sha256;
  if (!Number.isInteger(first) || first < 1 || first > parts) throw invalid(`${what}: first_part ${first} is not one of its parts 1 to ${parts}`);
  if (sums.length < 1 || sums.length > MAX_URLS_PER_CALL) throw invalid(`${what}: ask for 1 to ${MAX_URLS_PER_CALL} parts at a time, not ${sums.length}`);
  if (first + sums.length - 1 > parts) throw invalid(`${what}: parts ${first} to ${first + sums.length - 1} asked for; it has ${parts}`);
  for (const s of sums) if (!SHA256_HEX.test(s)) throw invalid(`${what}: "${s.slice(0, 80)}" is not a SHA-256 in lowercase hex`);

  // Who may push to the name, as for the push itself: its owner, or for a new name the caller's project.
  const owner = await db.selectFrom('datasets').select(['project', 'deleting_at']).where('name', '=', name).executeTakeFirst();
  const project = owner?.project ?? (caller.kind === 'user' ? caller.project : '');
  authorizeName(caller, Actions.PushDataset, project, 'dataset', name);
  if (owner?.deleting_at) throw new TrainyardError(ErrorCodes.FailedPrecondition, `dataset "${name}" is being deleted; push again once it is gone`);

  const key = keys.datasetFile(name, rel);
  let uploadId = req.upload_id;
  if (!uploadId) {
    // Recorded and counted against the quota (with the project's other open uploads) before it is begun,
    // under the project's storage lock, so two calls cannot both fit in what is left.
    uploadId = await withStorageLock(db, project, async (trx) => {
      await trx.deleteFrom('dataset_uploads').where('project', '=', project).where('started_at', '<', sql<Date>`now() - ${UPLOAD_FORGOTTEN_AFTER}::interval`).execute();
      const open = await trx.selectFrom('dataset_uploads').select([sql<string>`count(*)`.as('n'), sql<string>`coalesce(sum(size_bytes), 0)`.as('bytes')])
        .where('project', '=', project).executeTakeFirstOrThrow();
      if (Number(open.n) >= MAX_OPEN_UPLOADS) {
        throw new TrainyardError(ErrorCodes.ResourceExhausted, `project "${project}" has ${open.n} dataset uploads open, the most it may; push again once some have ended (an upload left by a push that died is forgotten after a day)`);
      }
      await checkStorage(trx, project, size + Number(open.bytes), `dataset "${name}" (with the project's ${open.n} other uploads open)`);
      const id = await withStorageRetry(`start ${key}`, () => ctx.minio.initiateNewMultipartUpload(settings.bucket, key, {}), ctx.storageRetry);
      await trx.insertInto('dataset_uploads').values({ upload_id: id, project, object_key: key, size_bytes: size, part_bytes: Number(req.part_bytes) }).execute();
      return id;
    });
  } else {
    // More URLs for an upload this scheduler began, for this file, of this size, cut into parts of the
    // same size (each URL's signed length comes from it: other parts would let an upload hold more).
    const row = await db.selectFrom('dataset_uploads').select(['object_key', 'size_bytes', 'part_bytes']).where('upload_id', '=', uploadId).executeTakeFirst();
    if (!row || row.object_key !== key || Number(row.size_bytes) !== size || Number(row.part_bytes) !== Number(req.part_bytes)) {
      throw invalid(`${what}: upload ${uploadId.slice(0, 80)} is not one begun for this file at this size and part size (unknown, ended, or another's)`);
    }
  }
  const creds = await writeKeys(ctx, key);
  const signing = { endpoint, accessKey: creds.access_key ?? '', secretKey: creds.secret_key ?? '', sessionToken: creds.session_token ?? '' };
  const partBytes = Number(req.part_bytes);
  const lengthOf = (part: number) => (part < parts ? partBytes : size - (parts - 1) * partBytes);
  const now = new Date();
  return {
    upload_id: uploadId,
    part_urls: sums.map((sha, i) => presign(signing, 'PUT', settings.bucket, key, { partNumber: String(first + i), uploadId },
      { payloadSha256: sha, contentLength: lengthOf(first + i), expiresSec: URL_SECONDS, now })),
    abort_url: presign(signing, 'DELETE', settings.bucket, key, { uploadId }, { expiresSec: URL_SECONDS, now }),
    expires_at_ms: now.getTime() + URL_SECONDS * 1000,
  };
}

/** STS keys that may only write `key`, kept while they have an URL's life and more left (the next parts of the same file). */
const keysFor = new Map<string, { creds: StorageCredentials; until: number }>();
async function writeKeys(ctx: SchedulerContext, key: string): Promise<StorageCredentials> {
  const { settings } = ctx;
  // By MinIO and bucket too: the map is the process's, and keys for one bucket's object write no other's.
  const cacheKey = `${settings.minioEndpoint}\0${settings.bucket}\0${key}`;
  const kept = keysFor.get(cacheKey);
  if (kept && kept.until > Date.now()) return kept.creds;
  const creds = await issueWriteOneCredentials({ minioEndpoint: settings.minioEndpoint, accessKey: settings.minioAccessKey, secretKey: settings.minioSecretKey, durationSeconds: KEY_SECONDS }, settings.bucket, key);
  setRecent(keysFor, cacheKey, { creds, until: Date.now() + KEY_REUSE_LEFT_MS }, 1024);
  return creds;
}
