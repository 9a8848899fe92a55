// The first admin token. A scheduler starting on a database with no live admin token creates one and
// writes it to the token file (mode 0600 in a 0700 folder), so the operator on that machine can act at
// once (the CLI reads the same file). Under a transaction-scoped advisory lock: several schedulers
// starting at once create exactly one. The log names the file, never the token.
import { mkdir, rename, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import { newToken } from './secrets.js';

const LOCK_KEY = 7_246_006; // arbitrary, fixed: "trainyard bootstrap admin token"

export async function bootstrapAdminToken(db: Db, tokenFile: string, log: Logger): Promise<void> {
  const created = await db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(${LOCK_KEY})`.execute(trx);
    const live = await trx.selectFrom('tokens').select('id').where('role', '=', 'admin').where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)])).limit(1).executeTakeFirst();
    if (live) return null;
    const t = newToken();
    // Written before the commit: if the file cannot be written, no token exists that nobody holds.
    await writeTokenFile(tokenFile, t.token);
    await trx.insertInto('tokens').values({ id: t.id, secret_sha256: t.secretSha256, name: 'bootstrap admin', project: 'default', role: 'admin', expires_at: null }).execute();
    return t.id;
  });
  if (created) log.info({ tokenId: created, tokenFile }, 'no admin token existed: created one and wrote it to the token file (mode 0600)');
}

async function writeTokenFile(file: string, token: string): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${token}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}
