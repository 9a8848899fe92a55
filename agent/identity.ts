// The agent's identity: a random secret kept in its work dir (`<work dir>/identity`, mode 0600), the same
// across restarts. The scheduler refuses a second live agent under the same name with another identity,
// so two agents started with one name (both default to the hostname) cannot silently become one.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export async function loadIdentity(workDir: string): Promise<string> {
  const file = path.join(workDir, 'identity');
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const id = randomBytes(32).toString('base64url');
  try {
    // 'wx': two processes sharing a work dir on first start agree on one identity (the loser reads it).
    await writeFile(file, `${id}\n`, { mode: 0o600, flag: 'wx' });
    return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return (await readFile(file, 'utf8')).trim();
  }
}
