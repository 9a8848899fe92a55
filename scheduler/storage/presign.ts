// URLs that let a client store one part of one multipart upload, and nothing else (issue 21): a large
// dataset file goes from the CLI straight to MinIO instead of through the scheduler, which otherwise
// spends about 6 CPU-seconds a GiB receiving, hashing and resending it. Each URL is signed (SigV4, query
// string) for one PUT of one part number of one upload id, with its Content-Length and the part's SHA-256
// (X-Amz-Content-Sha256, which MinIO checks against the body): the URL stores exactly those bytes or
// nothing, and nobody on the way can change them. It is signed with STS keys that may only write that one
// key (datasets/presign-parts.ts), never with the scheduler's own: MinIO does not look at headers a
// presigned URL leaves unsigned, and an `x-amz-copy-source` on a part PUT (UploadPartCopy) would copy,
// with the signer's rights, any object it can read. minio-js's presigner always signs UNSIGNED-PAYLOAD and
// no Content-Length, hence this one. The upload is completed by the scheduler (datasets/push.ts) once the
// push's stream names it; once completed (or aborted), its URLs store nothing more.
import { createHash, createHmac } from 'node:crypto';
import { encodeKeyPart } from '../../shared/storage.js';

export interface SigningKeys {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  /** STS keys' session token, signed into the URL. */
  sessionToken?: string;
  region?: string;
}

export interface PresignOptions {
  /** The body's SHA-256 (hex), which MinIO checks; none: UNSIGNED-PAYLOAD (a DELETE). */
  payloadSha256?: string;
  /** The body's exact length, signed (MinIO signs what the request's Content-Length says). */
  contentLength?: number;
  expiresSec: number;
  now?: Date;
}

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();

/** A presigned URL for `method` on bucket/key with `query` (e.g. partNumber, uploadId). */
export function presign(k: SigningKeys, method: string, bucket: string, key: string, query: Record<string, string>, o: PresignOptions): string {
  const url = new URL(k.endpoint);
  const region = k.region ?? 'us-east-1';
  const amzDate = (o.now ?? new Date()).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${region}/s3/aws4_request`;
  const signedHeaders = o.contentLength === undefined ? 'host' : 'content-length;host';
  const params: Record<string, string> = {
    ...query,
    'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
    'X-Amz-Credential': `${k.accessKey}/${scope}`,
    'X-Amz-Date': amzDate,
    'X-Amz-Expires': String(o.expiresSec),
    'X-Amz-SignedHeaders': signedHeaders,
  };
  if (k.sessionToken) params['X-Amz-Security-Token'] = k.sessionToken;
  if (o.payloadSha256) params['X-Amz-Content-Sha256'] = o.payloadSha256;
  const canonicalQuery = Object.keys(params).sort().map((n) => `${encodeKeyPart(n)}=${encodeKeyPart(params[n]!)}`).join('&');
  const path = `/${encodeKeyPart(bucket)}/${key.split('/').map(encodeKeyPart).join('/')}`;
  const headers = `${o.contentLength === undefined ? '' : `content-length:${o.contentLength}\n`}host:${url.host}\n`;
  const canonical = [method, path, canonicalQuery, headers, signedHeaders, o.payloadSha256 ?? 'UNSIGNED-PAYLOAD'].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${k.secretKey}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', signingKey).update(toSign).digest('hex');
  return `${url.protocol}//${url.host}${path}?${canonicalQuery}&X-Amz-Signature=${signature}`;
}
