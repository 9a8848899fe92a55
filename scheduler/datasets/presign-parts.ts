// PresignDatasetParts: a large file of a dataset push is stored by the client itself, part by part, by URLs
// the scheduler signs (storage/presign.ts), instead of every byte passing through the scheduler (issue 21).
// Nothing here makes the file part of a dataset: the upload stays incomplete, invisible to runs and lists,
// until the push's stream names it and datasets/push.ts, having made all of a push's checks (the name's
// claim, the quota on what was stored, the limits), completes it. An upload no stream ever names (the
// client died between the two) holds only the parts its URLs allowed, which MinIO drops with its other
// stale multipart uploads (after 24 hours by default).
import type { SchedulerContext } from '../context.js';
import type { PresignDatasetPartsRequest__Output, PresignDatasetPartsResponse } from '../../shared/proto.js';
import { checkName, checkRelativePath } from '../../shared/names.js';
import { ErrorCodes, TrainyardError, invalid } from '../../shared/errors.js';
import { keys, withStorageRetry } from '../../shared/storage.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorizeName } from '../auth/policy.js';
import { checkStorage } from '../storage/quota.js';
import { presign } from '../storage/presign.js';

/** S3's (and MinIO's) bounds on a multipart upload. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
const MAX_PART_BYTES = 5 * 1024 * 1024 * 1024;
const MAX_PARTS = 10_000;
/** URLs one call signs: a client asks again for the next ones, so none waits long unused. */
const MAX_URLS_PER_CALL = 64;
/** How long a URL works: long enough for 64 parts over a slow link, and dead soon after a push gives up. */
const URL_SECONDS = 3600;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Where clients store parts, or null when the scheduler is set to take every byte itself. */
export function clientStorageUrl(ctx: SchedulerContext): string | null {
  const u = ctx.settings.clientStorageUrl.trim();
  if (u === 'none') return null;
  return u || ctx.settings.minioEndpoint;
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
    // Refused over the project's quota before anything is stored (the push checks again on what it completes).
    await checkStorage(db, project, size, `dataset "${name}"`);
    uploadId = await withStorageRetry(`start ${key}`, () => ctx.minio.initiateNewMultipartUpload(settings.bucket, key, {}), ctx.storageRetry);
  } else if (uploadId.length > 1024) {
    throw invalid(`${what}: upload_id is ${uploadId.length} characters; not one this scheduler started`);
  }
  // An upload id the scheduler did not start for this key matches no upload: MinIO refuses its parts.
  const signing = { endpoint, accessKey: settings.minioAccessKey, secretKey: settings.minioSecretKey };
  const now = new Date();
  return {
    upload_id: uploadId,
    part_urls: sums.map((sha, i) => presign(signing, 'PUT', settings.bucket, key, { partNumber: String(first + i), uploadId }, sha, URL_SECONDS, now)),
    abort_url: presign(signing, 'DELETE', settings.bucket, key, { uploadId }, null, URL_SECONDS, now),
    expires_at_ms: now.getTime() + URL_SECONDS * 1000,
  };
}
