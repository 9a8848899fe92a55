// Is this scheduler ready to serve? Postgres answers and has every migration this code knows, NATS
// answers a round trip, and MinIO has the bucket. Each check is bounded, so a service that hangs is
// reported as failed instead of hanging the probe. /readyz (http/health-routes.ts) and the gRPC health
// service (grpc.health.v1, scheduler.ts) report the same result.
import type * as Minio from 'minio';
import type { NatsConnection } from 'nats';
import type pg from 'pg';
import { errorMessage } from '../shared/errors.js';

export type CheckName = 'scheduler' | 'postgres' | 'migrations' | 'nats' | 'minio';
export interface CheckResult { readonly ok: boolean; readonly error?: string }
export interface Readiness {
  readonly ready: boolean;
  /** The checks that failed, in the order of `checks`. */
  readonly failed: readonly CheckName[];
  readonly checks: Readonly<Partial<Record<CheckName, CheckResult>>>;
}

const CHECK_TIMEOUT_MS = 3_000;

function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS); });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const ok: CheckResult = { ok: true };
const failed = (err: unknown): CheckResult => ({ ok: false, error: errorMessage(err) });

export function readiness(checks: Partial<Record<CheckName, CheckResult>>): Readiness {
  const names = Object.keys(checks) as CheckName[];
  const bad = names.filter((n) => !checks[n]!.ok);
  return { ready: bad.length === 0, failed: bad, checks };
}

export interface ReadinessDeps {
  readonly pool: pg.Pool;
  /** The highest migration id this code knows (migrate()'s `current`). */
  readonly migration: number;
  readonly nats: NatsConnection;
  readonly minio: Minio.Client;
  readonly bucket: string;
}

export async function checkReadiness(d: ReadinessDeps): Promise<Readiness> {
  const [db, nats, minio] = await Promise.all([
    bounded(d.pool.query<{ n: number | null }>('SELECT max(id) AS n FROM trainyard_migrations'), 'postgres').then((r) => r.rows[0]?.n ?? 0, (err: unknown) => err as Error),
    // While nats.js reconnects, a flush fails with a bare code (DISCONNECT): say what was tried.
    d.nats.isClosed() ? Promise.resolve(failed(new Error('the NATS connection is closed')))
      : bounded(d.nats.flush(), 'nats').then(() => ok, (err: unknown) => failed(new Error(`no round trip to NATS: ${errorMessage(err)}`))),
    bounded(d.minio.bucketExists(d.bucket), 'minio').then((exists) => (exists ? ok : failed(new Error(`bucket ${d.bucket} does not exist`))), failed),
  ]);
  const migrations = db instanceof Error ? failed(new Error('not checked: postgres did not answer'))
    : db >= d.migration ? ok : failed(new Error(`the database is at migration ${db}, this scheduler needs ${d.migration}`));
  return readiness({ postgres: db instanceof Error ? failed(db) : ok, migrations, nats, minio });
}
