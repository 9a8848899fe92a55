// Issue 8: several schedulers starting at once on an empty database make exactly one admin token, write
// it (0600) to the token file, and log the file, never the token. Real Postgres.
import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { testDatabase, tempDir } from '../helpers/stack.js';
import { bootstrapAdminToken } from '../../scheduler/auth/bootstrap.js';
import { sha256Hex } from '../../scheduler/auth/secrets.js';

t.test('concurrent bootstraps make one admin token', async (t) => {
  const { db } = await testDatabase(t);
  const file = path.join(tempDir(), 'cfg', 'trainyard', 'token');
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (l: string) => { lines.push(l); } });
  await Promise.all(Array.from({ length: 8 }, () => bootstrapAdminToken(db, file, log)));
  const rows = await db.selectFrom('tokens').selectAll().execute();
  t.equal(rows.length, 1, 'one token');
  t.equal(rows[0]!.role, 'admin', 'an admin token');
  const token = readFileSync(file, 'utf8').trim();
  t.equal(rows[0]!.secret_sha256, sha256Hex(token), 'the file holds it; the table only its hash');
  t.equal(statSync(file).mode & 0o777, 0o600, 'the file is 0600');
  t.equal(statSync(path.dirname(file)).mode & 0o777, 0o700, 'its folder 0700');
  t.equal(lines.length, 1, 'one log line');
  t.match(lines[0], file, 'naming the file');
  // tyt_ + 12-character id + _ : the rest is the secret (base64url may hold '_', so no split).
  t.notOk(lines.join('').includes(token.slice(17)), 'never the token');

  // A live admin token exists: nothing more. Revoked (none live): a new one.
  await bootstrapAdminToken(db, file, log);
  t.equal((await db.selectFrom('tokens').selectAll().execute()).length, 1, 'a second start makes none');
  await db.updateTable('tokens').set({ revoked_at: new Date() }).execute();
  await bootstrapAdminToken(db, file, log);
  t.equal((await db.selectFrom('tokens').select('id').where('revoked_at', 'is', null).execute()).length, 1, 'with no live admin token, a start makes one');
  t.not(readFileSync(file, 'utf8').trim(), token, 'and writes the new one');
});
