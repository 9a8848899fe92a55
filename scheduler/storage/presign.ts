// URLs that let a client store one part of one multipart upload, and nothing else (issue 21): a large
// dataset file goes from the CLI straight to MinIO instead of through the scheduler, which otherwise
// spends about 6 CPU-seconds a GiB receiving, hashing and resending it. Each URL is signed (SigV4, query
// string) with the scheduler's keys for one PUT of one part number of one upload id, and names the part's
// SHA-256 (X-Amz-Content-Sha256, which MinIO then checks against the body): the URL stores those bytes or
// nothing, so a client cannot use it to store more than the push announced, and nobody on the way can
// change them. minio-js's presigner always signs UNSIGNED-PAYLOAD, hence this one. The upload is completed
// by the scheduler (datasets/push.ts) once the push's stream names it, after checking its parts' sizes;
// once completed (or aborted), its URLs store nothing more.
import { createHash, createHmac } from 'node:crypto';

export interface SigningKeys {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  region?: string;
}

/** RFC 3986 encoding as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
const encode = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();

/**
 * A presigned URL for `method` on bucket/key with `query` (e.g. partNumber, uploadId), valid `expiresSec`
 * from `now`; `payloadSha256` (hex) binds the body, or null for none (a DELETE).
 */
export function presign(k: SigningKeys, method: string, bucket: string, key: string, query: Record<string, string>, payloadSha256: string | null, expiresSec: number, now = new Date()): string {
  const url = new URL(k.endpoint);
  const region = k.region ?? 'us-east-1';
  const amzDate = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${region}/s3/aws4_request`;
  const params: Record<string, string> = {
    ...query,
    'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
    'X-Amz-Credential': `${k.accessKey}/${scope}`,
    'X-Amz-Date': amzDate,
    'X-Amz-Expires': String(expiresSec),
    'X-Amz-SignedHeaders': 'host',
  };
  if (payloadSha256) params['X-Amz-Content-Sha256'] = payloadSha256;
  const canonicalQuery = Object.keys(params).sort().map((n) => `${encode(n)}=${encode(params[n]!)}`).join('&');
  const path = `/${encode(bucket)}/${key.split('/').map(encode).join('/')}`;
  const canonical = [method, path, canonicalQuery, `host:${url.host}`, '', 'host', payloadSha256 ?? 'UNSIGNED-PAYLOAD'].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${k.secretKey}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', signingKey).update(toSign).digest('hex');
  return `${url.protocol}//${url.host}${path}?${canonicalQuery}&X-Amz-Signature=${signature}`;
}
