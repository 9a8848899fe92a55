// Storage credentials for one attempt. Agents hold no storage keys of their own: when an agent claims an
// attempt (and again when it asks for fresh ones mid-run) the scheduler asks MinIO's STS (AssumeRole, as
// the scheduler's own user) for temporary keys whose session policy allows exactly what that attempt
// needs: read its package zip and its dataset folder(s), list those folders, and write under its own
// attempt prefix. What a train.py (or a setup.py) could steal is worth one attempt's inputs and outputs,
// for at most the credentials' lifetime; the scheduler issues no new ones once the attempt has ended.
import { AssumeRoleProvider } from 'minio/dist/esm/AssumeRoleProvider.mjs';
import type { StorageCredentials } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, errorMessage } from '../../shared/errors.js';
import { outputNames } from '../../shared/storage.js';

/** The files in an attempt's folder that only the scheduler writes. */
const schedulerWrites = [outputNames.results, outputNames.lineage];

/** MinIO refuses a shorter DurationSeconds (InvalidParameterValue). */
export const MIN_CREDENTIAL_SECONDS = 900;
/** MinIO refuses a longer session policy. */
const MAX_POLICY_CHARS = 2048;

export interface AttemptScope {
  bucket: string;
  /** Objects the attempt may read: its package zip. */
  readObjects: readonly string[];
  /** Folders (ending in '/') it may list and read: its dataset, or dataset/sub folder. */
  readPrefixes: readonly string[];
  /** The one folder (ending in '/') it may write: runs/RUN/attempt-N/; null: nothing (a preparation's read-only keys). */
  writePrefix: string | null;
  /** Its checkpoints' folder (ending in '/'), which it may write too: runs/RUN/checkpoints/attempt-N/. */
  checkpointPrefix?: string;
}

/**
 * The session policy: the intersection of this and the scheduler user's own policy is all the keys can
 * do. No listing beyond the attempt's read folders: not even of multipart uploads (shared/storage.ts
 * uploads in parts by its own upload id, so nothing needs the bucket-wide ListBucketMultipartUploads,
 * which MinIO grants only without a prefix condition). Within its write folder, the scheduler's own files
 * (_results.json, _lineage.json) are denied outright: they are written when the run commits, and the
 * credentials outlive the attempt by up to their lifetime.
 */
export function sessionPolicy(s: AttemptScope): string {
  const arn = (key = '') => `arn:aws:s3:::${s.bucket}${key ? `/${key}` : ''}`;
  const writes = [...(s.writePrefix ? [s.writePrefix] : []), ...(s.checkpointPrefix ? [s.checkpointPrefix] : [])];
  // Each folder once: MinIO's STS refuses a policy naming one resource twice (InvalidParameterValue,
  // "duplicate value found"), and a full pipeline may evaluate on the dataset it trains on.
  const readPrefixes = [...new Set(s.readPrefixes)];
  const readObjects = [...new Set(s.readObjects)];
  for (const p of [...readPrefixes, ...writes]) {
    if (!p.endsWith('/') || p === '/') throw new TrainyardError(ErrorCodes.Internal, `storage scope: "${p}" is not a folder`);
  }
  const statements: object[] = [
    { Effect: 'Allow', Action: ['s3:GetObject'], Resource: [...readObjects.map((k) => arn(k)), ...readPrefixes.map((p) => arn(`${p}*`))] },
  ];
  if (writes.length) statements.push({ Effect: 'Allow', Action: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'], Resource: writes.map((p) => arn(`${p}*`)) });
  if (s.writePrefix) statements.push({ Effect: 'Deny', Action: ['s3:PutObject'], Resource: schedulerWrites.map((name) => arn(s.writePrefix + name)) });
  // An attempt replaces its own checkpoints (the older one goes once a newer one is complete), by key.
  if (s.checkpointPrefix) statements.push({ Effect: 'Allow', Action: ['s3:DeleteObject'], Resource: [arn(`${s.checkpointPrefix}*`)] });
  if (readPrefixes.length) {
    statements.push({ Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [arn()], Condition: { StringLike: { 's3:prefix': readPrefixes.map((p) => `${p}*`) } } });
  }
  const policy = JSON.stringify({ Version: '2012-10-17', Statement: statements });
  if (policy.length > MAX_POLICY_CHARS) {
    throw new TrainyardError(ErrorCodes.InvalidArgument, `the attempt's storage policy is ${policy.length} characters, over MinIO's ${MAX_POLICY_CHARS} (package or dataset names too long)`);
  }
  return policy;
}

export interface IssuerOptions {
  minioEndpoint: string;
  accessKey: string;
  secretKey: string;
  durationSeconds: number;
}

/** Asks MinIO's STS for keys limited to one attempt's scope. */
export async function issueAttemptCredentials(o: IssuerOptions, scope: AttemptScope): Promise<StorageCredentials> {
  return assumeRole(o, sessionPolicy(scope), 'the attempt');
}

/** Keys that may only write `key` (PutObject, AbortMultipartUpload): what a dataset push's part URLs are signed with. */
export async function issueWriteOneCredentials(o: IssuerOptions, bucket: string, key: string): Promise<StorageCredentials> {
  const policy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:PutObject', 's3:AbortMultipartUpload'], Resource: [`arn:aws:s3:::${bucket}/${key}`] }] });
  if (policy.length > MAX_POLICY_CHARS) throw new TrainyardError(ErrorCodes.InvalidArgument, `the file's storage policy is ${policy.length} characters, over MinIO's ${MAX_POLICY_CHARS} (its path is too long)`);
  return assumeRole(o, policy, `${key}`);
}

/** AssumeRole (as the scheduler's user) with a session `policy`; `what` names whose keys they are in an error. */
async function assumeRole(o: IssuerOptions, policy: string, what: string): Promise<StorageCredentials> {
  const durationSeconds = Math.max(MIN_CREDENTIAL_SECONDS, o.durationSeconds);
  const provider = new AssumeRoleProvider({
    stsEndpoint: o.minioEndpoint,
    accessKey: o.accessKey,
    secretKey: o.secretKey,
    durationSeconds,
    policy,
    region: 'us-east-1',
  });
  const asked = Date.now();
  try {
    const c = await provider.getCredentials();
    return {
      access_key: c.getAccessKey(),
      secret_key: c.getSecretKey(),
      session_token: c.getSessionToken() ?? '',
      // From when it was asked, so the agent's idea of the expiry is never later than MinIO's.
      expires_at_ms: asked + durationSeconds * 1000,
    };
  } catch (err) {
    // STS unreachable or refusing: the claim fails UNAVAILABLE and the agent retries; the ack deadline
    // places the run again if it goes on.
    throw new TrainyardError(ErrorCodes.StorageError, `could not issue storage credentials for ${what}: ${errorMessage(err)}`, { cause: err });
  }
}
