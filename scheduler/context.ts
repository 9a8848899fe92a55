import type * as Minio from 'minio';
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';
import type pg from 'pg';
import type { Db } from './db/database.js';
import type { Settings } from '../shared/settings.js';
import type { schedulerSettings } from '../shared/settings.js';
import type { Subjects } from '../shared/subjects.js';
import type { RetryOptions } from '../shared/storage.js';
import type { RunTransitions } from './runs/transitions.js';
import type { AttemptCredentials } from './storage/credential-cache.js';

/** What every scheduler handler is given: its dependencies, passed explicitly. */
export interface SchedulerContext {
  readonly settings: Settings<typeof schedulerSettings>;
  readonly db: Db;
  readonly pool: pg.Pool;
  readonly minio: Minio.Client;
  readonly nats: NatsConnection;
  readonly subjects: Subjects;
  readonly log: Logger;
  readonly storageRetry: RetryOptions;
  /** The run state machine; every change it makes is logged and announced by one hook. */
  readonly runs: RunTransitions;
  /** Storage credentials for attempts: issued at the claim, or started when this scheduler placed it. */
  readonly credentials: AttemptCredentials;
  /** Rings the placement doorbell for every scheduler. */
  kick(): void;
  /** Rings it saying this agent's registration or status changed (the leader reads the agent again). */
  agentChanged(name: string): void;
  /** Rings it saying a project's caps or rules changed (every placer reads them again). */
  limitsChanged(): void;
  /** Tells watchers of a run (on any scheduler) that it changed. */
  runChanged(runId: string): void;
}
