// Plain numbered .sql migrations from migrations/, each in its own transaction, under an advisory lock so
// several schedulers starting at once apply each exactly once. Refuses a database newer than the code.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { projectRoot } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';

const LOCK_KEY = 7_246_001; // arbitrary, fixed: "trainyard migrations"

export interface MigrationResult { applied: string[]; current: number }

export async function migrate(pool: pg.Pool, dir = path.join(projectRoot(), 'migrations')): Promise<MigrationResult> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_.+\.sql$/.test(f)).sort();
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS trainyard_migrations (
      id int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Map<number, string>(
      (await client.query<{ id: number; name: string }>('SELECT id, name FROM trainyard_migrations')).rows.map((r) => [r.id, r.name]),
    );
    const known = new Set(files.map((f) => Number(f.slice(0, 3))));
    const newer = [...done.keys()].filter((id) => !known.has(id));
    if (newer.length > 0) {
      throw new TrainyardError(ErrorCodes.FailedPrecondition,
        `database has migrations ${newer.join(', ')} that this Trainyard does not know; it is newer than the code, refusing to start`);
    }
    const applied: string[] = [];
    for (const f of files) {
      const id = Number(f.slice(0, 3));
      if (done.has(id)) continue;
      const text = await readFile(path.join(dir, f), 'utf8');
      await client.query('BEGIN');
      try {
        await client.query(text);
        await client.query('INSERT INTO trainyard_migrations (id, name) VALUES ($1, $2)', [id, f]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new TrainyardError(ErrorCodes.Internal, `migration ${f} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(f);
    }
    return { applied, current: Math.max(0, ...known) };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => {});
    client.release();
  }
}
