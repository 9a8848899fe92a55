// The scheduler daemon: explicit states, every change logged, two-stage shutdown.
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';
import { createDb } from './db/database.js';
import { migrate } from './db/migrate.js';
import { Placer } from './placement/placer.js';
import { RunTransitions } from './runs/transitions.js';
import { clientService } from './grpc/client-service.js';
import { agentService } from './grpc/agent-service.js';
import { bootstrapAdminToken } from './auth/bootstrap.js';
import { reflectionService } from './grpc/reflection.js';
import { metricsRoutes, schedulerMetrics } from './metrics.js';
import { startHttpServer, type HttpServer } from './http/server.js';
import { healthRoutes } from './http/health-routes.js';
import { consoleStaticRoutes } from './http/console-static.js';
import { consoleApiRoutes, type ConsoleAuth } from './http/console-api.js';
import { TokenVerifier } from './auth/tokens.js';
import { AgentIdentities } from './auth/agent-identities.js';
import { StreamLimiter } from './auth/streams.js';
import { checkReadiness, readiness, type Readiness, type ReadinessDeps } from './readiness.js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { SchedulerContext } from './context.js';
import { loadProto, channelOptions } from '../shared/proto.js';
import { createMinioClient, ensureBucket, type RetryOptions } from '../shared/storage.js';
import { subjects as makeSubjects, kickSender, parseKick, type KickMessage } from '../shared/subjects.js';
import type { Settings, schedulerSettings } from '../shared/settings.js';
import { connectNats, natsOptions } from '../shared/nats.js';
import { serverCredentials, servesTls } from '../shared/tls.js';
import { ScheduleTicker } from './schedules/ticker.js';
import { EventRetention } from './events/retention.js';
import { WebhookOutbox } from './webhooks/outbox.js';
import { outboxOptions } from './webhooks/manage.js';
import { StorageJanitor } from './storage/janitor.js';
import { RunStatus } from '../shared/run-states.js';
import { AttemptCredentials } from './storage/credential-cache.js';
import { issueAttemptCredentials } from './storage/attempt-credentials.js';

export type SchedulerState = 'STARTING' | 'RUNNING' | 'STOPPING' | 'STOPPED' | 'FAILED';

/** How often the gRPC health status is brought up to date with the readiness checks (besides each /readyz). */
const HEALTH_REFRESH_MS = 5_000;
/** The names grpc.health.v1 answers for: the server as a whole ('') and each of its services. */
const HEALTH_SERVICES = ['', 'trainyard.v1.Trainyard', 'trainyard.v1.AgentLink'];

export class Scheduler {
  #state: SchedulerState = 'STARTING';
  #server: grpc.Server | null = null;
  #placer: Placer | null = null;
  #ticker: ScheduleTicker | null = null;
  #retention: EventRetention | null = null;
  #webhooks: WebhookOutbox | null = null;
  #janitor: StorageJanitor | null = null;
  #streams: StreamLimiter | null = null;
  #nats: NatsConnection | null = null;
  #closeDb: (() => Promise<void>) | null = null;
  #http: HttpServer | null = null;
  #readinessDeps: ReadinessDeps | null = null;
  #health = new HealthImplementation(Object.fromEntries(HEALTH_SERVICES.map((s) => [s, 'NOT_SERVING'])));
  #healthTimer: NodeJS.Timeout | null = null;
  port = 0;
  /** Where /healthz, /readyz and the web console are served ('' when --http-listen is empty). */
  httpAddress = '';

  constructor(readonly settings: Settings<typeof schedulerSettings>, readonly log: Logger) {}

  get state(): SchedulerState { return this.#state; }

  #setState(s: SchedulerState): void {
    this.log.info({ from: this.#state, to: s }, 'scheduler state');
    this.#state = s;
  }

  /**
   * Ready when RUNNING and Postgres, its migrations, NATS and MinIO all answer (readiness.ts). Each
   * answer also sets the gRPC health status, so grpc.health.v1 and /readyz agree.
   */
  async readiness(): Promise<Readiness> {
    const deps = this.#readinessDeps;
    const r = this.#state !== 'RUNNING' || !deps
      ? readiness({ scheduler: { ok: false, error: `the scheduler is ${this.#state}` } })
      : await checkReadiness(deps);
    const status: ServingStatus = r.ready && this.#state === 'RUNNING' ? 'SERVING' : 'NOT_SERVING';
    for (const s of HEALTH_SERVICES) this.#health.setStatus(s, status);
    return r;
  }

  async start(): Promise<void> {
    const { settings, log } = this;
    try {
      // Settings that cannot work (--nats-creds with --nats-user, an unreadable creds file) are refused
      // before anything else: later, the refusal came after migrations, the bootstrap token and the bucket.
      const natsConnectOptions = natsOptions(settings, 'trainyard-scheduler');
      // The pool connects lazily: made first, so that /metrics can read from it.
      const { db, pool } = createDb(settings.databaseUrl, 20);
      // One token verifier for /metrics, the gRPC API and the web console's API: a revocation reaches all.
      const tokens = new TokenVerifier(db, settings.authCacheMs);
      // Agents' identities, remembered for AgentLink calls; every change of an agent (register, revoke,
      // forget), here or on another scheduler, forgets its identity (auth/agent-identities.ts).
      const identities = new AgentIdentities(db, settings.authCacheMs);
      this.#closeDb = () => db.destroy();
      // First, so that /healthz answers (and /readyz says why not) while the scheduler waits for its services.
      if (settings.httpListen) {
        this.#http = await startHttpServer(settings.httpListen, { ...healthRoutes(() => this.readiness()), ...metricsRoutes(db, tokens) }, log);
        this.httpAddress = this.#http.address;
      }
      const migrated = await migrate(pool);
      if (migrated.applied.length) log.info({ applied: migrated.applied }, 'migrations applied');
      await bootstrapAdminToken(db, settings.tokenFile, log);
      const minio = createMinioClient(settings);
      const storageRetry: RetryOptions = {
        retries: 6,
        onRetry: (err, attempt, delayMs) => log.warn({ err: String(err), attempt, delayMs }, 'storage call failed; retrying'),
      };
      await ensureBucket(minio, settings.bucket, storageRetry);
      const nats = await connectNats(settings, natsConnectOptions);
      this.#nats = nats;
      void (async () => {
        for await (const s of nats.status()) log.info({ type: s.type, data: String(s.data) }, 'nats status');
      })();
      const subjects = makeSubjects(settings.subjectPrefix);
      const publish = (subject: string, data = '') => { try { nats.publish(subject, data); } catch (err) { log.warn({ err: String(err), subject }, 'nats publish failed'); } };
      // The doorbell says who rang it: this scheduler's own placer is told directly, and its echo from NATS
      // would only start a second pass right after the first.
      const self = randomUUID();
      const kick = () => { this.#placer?.kick(); publish(subjects.kick, JSON.stringify({ from: self })); };
      // The placer's doorbell saying what changed, for the leader's model of the fleet (this scheduler's
      // placer at once, any other's through NATS).
      const fleetChanged = (m: KickMessage) => { this.#placer?.doorbell(m); publish(subjects.kick, JSON.stringify({ ...m, from: self })); };
      // The one hook every run transition goes through, after it committed: one log line, the run's
      // doorbell for its watchers, and the placer's when an agent's capacity came free.
      const runs = new RunTransitions(db, (c) => {
        log.info({ run: c.id, status: c.status, attempt: c.attempt, agent: c.agent, detail: c.detail }, 'run status');
        if (c.status === RunStatus.Running && c.ageSeconds !== undefined) schedulerMetrics.submitToStart.observe(c.ageSeconds);
        publish(subjects.run(c.id));
        if (c.freed) {
          if (c.lease !== null) fleetChanged({ freed: { run: c.id, lease: c.lease } });
          else kick();
        }
      });
      const credentials = new AttemptCredentials((scope) => issueAttemptCredentials({
        minioEndpoint: settings.minioEndpoint, accessKey: settings.minioAccessKey, secretKey: settings.minioSecretKey, durationSeconds: settings.storageCredentialSeconds,
      }, scope), settings.bucket);
      const placer = new Placer({
        db, runs, databaseUrl: settings.databaseUrl, nats, subjects, log, onPlaced: (r) => credentials.prefetch(r),
        agentLostAfterMs: settings.agentLostAfterMs, dispatchAckTimeoutMs: settings.dispatchAckTimeoutMs, packagingDeadlineMs: settings.packagingDeadlineS * 1000, attemptLeaseBeats: settings.attemptLeaseBeats,
        preemptMinRuntimeS: settings.preemptMinRuntimeS, gangReserveAfterS: settings.gangReserveAfterS,
      });
      this.#placer = placer;
      const ctx: SchedulerContext = {
        settings, db, pool, minio, nats, subjects, log, storageRetry, runs, credentials,
        kick,
        agentChanged: (name) => { identities.forget(name); fleetChanged({ agent: name }); },
        limitsChanged: () => fleetChanged({ limits: true }),
        runChanged: (id) => publish(subjects.run(id)),
      };
      nats.subscribe(subjects.kick, { callback: (err, m) => {
        if (!err && kickSender(m.data) === self) return;
        const kicked = err ? null : parseKick(m.data);
        if (kicked && 'agent' in kicked) identities.forget(kicked.agent);
        placer.doorbell(kicked);
      } });
      placer.start();
      this.#ticker = new ScheduleTicker(ctx);
      this.#ticker.start();
      this.#retention = new EventRetention({ db, log, retentionDays: settings.eventsRetentionDays, webhookLogRetentionDays: settings.webhookLogRetentionDays, isLeader: () => placer.isLeader });
      this.#retention.start();
      // Every scheduler delivers webhooks; the outbox's claims share the work out (webhooks/outbox.ts).
      this.#webhooks = new WebhookOutbox(outboxOptions(ctx));
      this.#webhooks.start();
      this.#janitor = new StorageJanitor({ ...ctx, intervalS: settings.storageJanitorIntervalS, isLeader: () => placer.isLeader });
      this.#janitor.start();

      // One token verifier and one stream cap for the gRPC API and the web console's API.
      // The stream registry re-reads open streams' tokens and ends those of a dead one; the verifier then
      // forgets it too, so a new call with it is refused at once, not after the verifier's cache expires.
      const auth: ConsoleAuth = { tokens, streams: new StreamLimiter(settings.maxStreamsPerToken, { db, log, onDead: (id) => tokens.forget(id) }) };
      this.#streams = auth.streams;
      this.#http?.mount({ ...consoleStaticRoutes(), ...consoleApiRoutes(ctx, auth) });

      const proto = loadProto();
      const server = new grpc.Server(channelOptions);
      server.addService(proto.trainyard.v1.Trainyard.service, clientService(ctx, auth));
      server.addService(proto.trainyard.v1.AgentLink.service, agentService(ctx, identities));
      // Health and reflection take no token (handlers.ts authenticates only the services above): a load
      // balancer or grpcurl may ask whether the scheduler serves, and what, but not call it.
      this.#health.addToServer(server);
      reflectionService().addToServer(server);
      this.port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(settings.listen, serverCredentials(settings), (err, port) => (err ? reject(err) : resolve(port))));
      this.#server = server;
      const host = settings.listen.slice(0, settings.listen.lastIndexOf(':'));
      this.#readinessDeps = { pool, migration: migrated.current, nats, minio, bucket: settings.bucket };
      this.#setState('RUNNING');
      await this.readiness();
      let refreshing = false;
      this.#healthTimer = setInterval(() => {
        if (refreshing) return;
        refreshing = true;
        this.readiness().catch((err: unknown) => log.warn({ err: String(err) }, 'readiness check failed')).finally(() => { refreshing = false; });
      }, HEALTH_REFRESH_MS).unref();
      log.info({ address: `${host}:${this.port}`, port: this.port, http: this.httpAddress, tls: servesTls(settings), mtls: settings.tlsClientCa !== '' }, 'listening');
    } catch (err) {
      this.#setState('FAILED');
      await this.#teardown();
      throw err;
    }
  }

  /** First call: stop taking calls and let in-flight ones finish (bounded). A second call forces. */
  async stop(force = false): Promise<void> {
    if (this.#state === 'STOPPED') return;
    if (this.#state === 'STOPPING' && !force) return;
    this.#setState('STOPPING');
    // Not ready from now on: a load balancer stops sending calls while in-flight ones finish.
    for (const s of HEALTH_SERVICES) this.#health.setStatus(s, 'NOT_SERVING');
    const server = this.#server;
    if (server) {
      if (force) server.forceShutdown();
      else {
        await Promise.race([
          new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
          new Promise<void>((resolve) => setTimeout(resolve, 5000).unref()),
        ]);
        server.forceShutdown();
      }
    }
    await this.#teardown();
    this.#setState('STOPPED');
  }

  async #teardown(): Promise<void> {
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    await this.#http?.close().catch(() => {});
    await this.#ticker?.stop().catch(() => {});
    await this.#retention?.stop().catch(() => {});
    await this.#webhooks?.stop().catch(() => {});
    await this.#janitor?.stop().catch(() => {});
    this.#streams?.stop();
    await this.#placer?.stop().catch(() => {});
    await this.#nats?.drain().catch(() => {});
    await this.#closeDb?.().catch(() => {});
  }
}
