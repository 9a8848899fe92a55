// Token and credential text: formats, hashing, constant-time comparison. A client or join token is
// `tyt_<id>_<secret>` (the id is public: `tokens list`/`revoke` name it); an agent credential is
// `tya_<secret>`, sent with the agent's name. Secrets are 256 random bits; only SHA-256 digests are
// stored, which is enough for secrets of that entropy (no slow hash needed: nothing to brute-force).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { customAlphabet } from 'nanoid';

const newId = customAlphabet('abcdefghijklmnopqrstuvwxyz0123456789', 12);
const TOKEN = /^tyt_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

export const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

export function newToken(): { id: string; token: string; secretSha256: string } {
  const id = newId();
  const token = `tyt_${id}_${randomBytes(32).toString('base64url')}`;
  return { id, token, secretSha256: sha256Hex(token) };
}

/** The public id of a well-formed token, or null. */
export function tokenId(token: string): string | null {
  return TOKEN.exec(token)?.[1] ?? null;
}

export function newAgentCredential(): { credential: string; sha256: string } {
  const credential = `tya_${randomBytes(32).toString('base64url')}`;
  return { credential, sha256: sha256Hex(credential) };
}

/** Whether `presented` hashes to `storedHex`, in time that does not depend on where they differ. */
export function matchesHash(presented: string, storedHex: string | null): boolean {
  return digestMatches(sha256Hex(presented), storedHex);
}

/** The same, for a presented secret already hashed (`sha256Hex`). */
export function digestMatches(presentedHex: string, storedHex: string | null): boolean {
  if (!storedHex || !/^[0-9a-f]{64}$/.test(storedHex)) return false;
  return timingSafeEqual(Buffer.from(presentedHex, 'hex'), Buffer.from(storedHex, 'hex'));
}
