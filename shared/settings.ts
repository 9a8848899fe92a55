// Settings in layers: each one is declared once here with its default and documentation; a value comes
// from a command-line flag, else its TRAINYARD_* variable, else the daemon's config file (--config, keys
// named as the flags), else the default. compileSettings() validates and freezes, so a daemon never starts
// on a half-parsed configuration; describeSettings() says where each value came from (--print-config).
import os from 'node:os';
import path from 'node:path';
import { invalid } from './errors.js';

type Kind = 'string' | 'int' | 'labels';
interface SettingSpec {
  readonly env: string;
  readonly flag: string;
  readonly kind: Kind;
  readonly default: () => string;
  readonly doc: string;
  /** Its value is a secret: --print-config redacts it (test/unit/config-file.test.ts checks every flag naming a password, secret or token). */
  readonly secret?: true;
  /** For an int: the smallest value that means anything (0 attempts, a 0 ms heartbeat); smaller is refused at start. */
  readonly min?: number;
  /** For an int: the largest value that can work (what a service it is handed to takes); larger is refused at start. */
  readonly max?: number;
  /** For a string: the only values it takes; another is refused at start (and by --print-config). */
  readonly oneOf?: readonly string[];
}

const home = os.homedir();
const spec = <T extends Record<string, SettingSpec>>(s: T) => s;

export const commonSettings = spec({
  scheduler: { env: 'TRAINYARD_SCHEDULER', flag: 'scheduler', kind: 'string', default: () => '127.0.0.1:50051', doc: 'scheduler gRPC address that clients and agents dial' },
  logLevel: { env: 'TRAINYARD_LOG_LEVEL', flag: 'log-level', kind: 'string', default: () => 'info', doc: 'pino log level for daemons', oneOf: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
});

/** Where the CLI reads its token and where a bootstrapping scheduler writes the first admin token. */
const tokenFileSetting = {
  tokenFile: { env: 'TRAINYARD_TOKEN_FILE', flag: 'token-file', kind: 'string', default: () => path.join(home, '.config/trainyard/token'), doc: 'token file: the CLI reads its token here; a scheduler on a database without an admin token writes one here (0600)' },
} as const satisfies Record<string, SettingSpec>;

export const storageSettings = spec({
  natsUrl: { env: 'TRAINYARD_NATS_URL', flag: 'nats-url', kind: 'string', default: () => 'nats://127.0.0.1:4222', doc: 'NATS server(s), comma-separated' },
  minioEndpoint: { env: 'TRAINYARD_MINIO_ENDPOINT', flag: 'minio-endpoint', kind: 'string', default: () => 'http://127.0.0.1:9000', doc: 'MinIO (S3) endpoint URL' },
  subjectPrefix: { env: 'TRAINYARD_SUBJECT_PREFIX', flag: 'subject-prefix', kind: 'string', default: () => 'trainyard', doc: 'prefix of every NATS subject (isolates several installations on one NATS)' },
  bucket: { env: 'TRAINYARD_BUCKET', flag: 'bucket', kind: 'string', default: () => 'trainyard', doc: 'bucket holding packages, datasets and run outputs' },
  // NATS credentials are connect options: nats.js ignores user:pass in a URL. `npm run services` makes a
  // scheduler user (may publish) and an agent user (may only subscribe), in its services dir (nats-users.env).
  natsUser: { env: 'TRAINYARD_NATS_USER', flag: 'nats-user', kind: 'string', default: () => '', doc: 'NATS user (empty: connect without one)' },
  natsPassword: { env: 'TRAINYARD_NATS_PASSWORD', flag: 'nats-password', kind: 'string', secret: true, default: () => '', doc: 'NATS password for --nats-user' },
  natsCreds: { env: 'TRAINYARD_NATS_CREDS', flag: 'nats-creds', kind: 'string', default: () => '', doc: 'NATS .creds file (JWT + NKey seed; operator-mode servers), instead of user/password' },
  natsCa: { env: 'TRAINYARD_NATS_CA', flag: 'nats-ca', kind: 'string', default: () => '', doc: 'CA file for a NATS server with TLS (tls:// URLs; empty: the system CAs)' },
});

/** gRPC TLS on the scheduler's port (shared/tls.ts). Without a certificate the port is plaintext. */
export const serverTlsSettings = {
  tlsCert: { env: 'TRAINYARD_TLS_CERT', flag: 'tls-cert', kind: 'string', default: () => '', doc: 'PEM certificate (chain) to serve gRPC over TLS (with --tls-key)' },
  tlsKey: { env: 'TRAINYARD_TLS_KEY', flag: 'tls-key', kind: 'string', default: () => '', doc: 'PEM private key for --tls-cert' },
  tlsClientCa: { env: 'TRAINYARD_TLS_CLIENT_CA', flag: 'tls-client-ca', kind: 'string', default: () => '', doc: 'require a client certificate signed by this CA from every caller, agents and CLIs (mTLS)' },
} as const satisfies Record<string, SettingSpec>;

/** gRPC TLS for whoever dials the scheduler: agents and the CLI. */
export const clientTlsSettings = {
  tlsCa: { env: 'TRAINYARD_TLS_CA', flag: 'tls-ca', kind: 'string', default: () => '', doc: 'CA file to verify the scheduler\'s certificate: set, the connection is TLS (empty: plaintext)' },
  tlsClientCert: { env: 'TRAINYARD_TLS_CLIENT_CERT', flag: 'tls-client-cert', kind: 'string', default: () => '', doc: 'PEM client certificate, for a scheduler started with --tls-client-ca' },
  tlsClientKey: { env: 'TRAINYARD_TLS_CLIENT_KEY', flag: 'tls-client-key', kind: 'string', default: () => '', doc: 'PEM private key for --tls-client-cert' },
} as const satisfies Record<string, SettingSpec>;

/** A daemon's config file; itself only a flag or a variable (a config file cannot name another). */
export const configFileSetting = {
  config: { env: 'TRAINYARD_CONFIG', flag: 'config', kind: 'string', default: () => '', doc: 'config file of settings keyed by flag name, TOML (.toml) or YAML (.yaml, .yml); flags and variables win over it' },
} as const satisfies Record<string, SettingSpec>;

export const schedulerSettings = spec({
  ...commonSettings,
  ...configFileSetting,
  ...storageSettings,
  ...serverTlsSettings,
  // Only the scheduler holds storage keys. `npm run services` makes a non-root MinIO user for it (in its
  // services dir, minio-users.env); agents get per-attempt STS credentials from it (ClaimAttempt).
  minioAccessKey: { env: 'TRAINYARD_MINIO_ACCESS_KEY', flag: 'minio-access-key', kind: 'string', default: () => 'minioadmin', doc: 'MinIO access key of the scheduler\'s user (agents hold none: they get per-attempt STS credentials)' },
  minioSecretKey: { env: 'TRAINYARD_MINIO_SECRET_KEY', flag: 'minio-secret-key', kind: 'string', secret: true, default: () => 'minioadmin', doc: 'MinIO secret key for --minio-access-key' },
  clientStorageUrl: { env: 'TRAINYARD_CLIENT_STORAGE_URL', flag: 'client-storage-url', kind: 'string', default: () => '', doc: 'MinIO URL as clients reach it: `dataset push` stores large files there directly, by URLs the scheduler signs for each part (empty: --minio-endpoint; "none": every byte goes through the scheduler)' },
  storageCredentialSeconds: { env: 'TRAINYARD_STORAGE_CREDENTIAL_SECONDS', flag: 'storage-credential-seconds', kind: 'int', max: 31_536_000, default: () => '900', doc: 'lifetime of the storage credentials an attempt gets (at least 900, MinIO\'s minimum; at most 31536000, its longest: 365 days); agents renew them while the attempt is current' },
  databaseUrl: { env: 'TRAINYARD_DATABASE_URL', flag: 'database-url', kind: 'string', default: () => 'postgres://trainyard@127.0.0.1:5432/trainyard', doc: 'Postgres connection URL (schema applied at start-up); with no password in it, PGPASSWORD or ~/.pgpass gives it (`npm run services` writes the URL with its password to postgres.env)' },
  listen: { env: 'TRAINYARD_SCHEDULER_LISTEN', flag: 'listen', kind: 'string', default: () => '127.0.0.1:50051', doc: 'gRPC listen address (port 0 picks a free one)' },
  httpListen: { env: 'TRAINYARD_HTTP_LISTEN', flag: 'http-listen', kind: 'string', default: () => '127.0.0.1:8080', doc: 'HTTP listen address for /healthz, /readyz and /metrics (port 0 picks a free one; empty: no HTTP server)' },
  heartbeatIntervalMs: { env: 'TRAINYARD_HEARTBEAT_INTERVAL_MS', flag: 'heartbeat-interval-ms', kind: 'int', min: 1, default: () => '2000', doc: 'how often agents heartbeat' },
  attemptLeaseBeats: { env: 'TRAINYARD_ATTEMPT_LEASE_BEATS', flag: 'attempt-lease-beats', kind: 'int', min: 1, default: () => '3', doc: 'an acknowledged attempt its agent leaves out of this many heartbeats in a row is taken back (requeued as a lost attempt, or Killed if a kill was asked)' },
  agentLostAfterMs: { env: 'TRAINYARD_AGENT_LOST_AFTER_MS', flag: 'agent-lost-after-ms', kind: 'int', default: () => '15000', doc: 'an agent silent this long is marked lost and its runs are placed again' },
  dispatchAckTimeoutMs: { env: 'TRAINYARD_DISPATCH_ACK_TIMEOUT_MS', flag: 'dispatch-ack-timeout-ms', kind: 'int', default: () => '10000', doc: 'a dispatch not acknowledged this long is placed again' },
  packagingDeadlineS: { env: 'TRAINYARD_PACKAGING_DEADLINE_S', flag: 'packaging-deadline', kind: 'int', default: () => '7200', doc: 'a run in Packaging (package, environment and data on its agent) this many seconds fails, whatever its agent says (0: no deadline; agents end it first at their --packaging-timeout)' },
  preemptMinRuntimeS: { env: 'TRAINYARD_PREEMPT_MIN_RUNTIME_S', flag: 'min-runtime', kind: 'int', default: () => '600', doc: 'a run is never preempted (by a higher-priority run, projects set P --preemptible true) within this many seconds of its train.py starting' },
  gangReserveAfterS: { env: 'TRAINYARD_GANG_RESERVE_AFTER_S', flag: 'gang-reserve-after', kind: 'int', default: () => '300', doc: 'a multi-agent run (gang) that has waited this many seconds has agents reserved for it (the oldest of the highest priority): smaller runs stop being placed on them until it fits; 0 = reserve at once' },
  maxAttempts: { env: 'TRAINYARD_MAX_ATTEMPTS', flag: 'max-attempts', kind: 'int', min: 1, default: () => '2', doc: 'attempts per run after agent loss before it fails (at least 1)' },
  maxPackageBytes: { env: 'TRAINYARD_MAX_PACKAGE_BYTES', flag: 'max-package-bytes', kind: 'int', default: () => String(512 * 1024 * 1024), doc: 'largest package zip accepted' },
  maxUnzippedBytes: { env: 'TRAINYARD_MAX_UNZIPPED_BYTES', flag: 'max-unzipped-bytes', kind: 'int', default: () => String(2 * 1024 * 1024 * 1024), doc: 'largest total unpacked size of a package zip (zip-bomb guard)' },
  maxZipEntries: { env: 'TRAINYARD_MAX_ZIP_ENTRIES', flag: 'max-zip-entries', kind: 'int', default: () => '20000', doc: 'most entries in a package zip' },
  ...tokenFileSetting,
  authCacheMs: { env: 'TRAINYARD_AUTH_CACHE_MS', flag: 'auth-cache-ms', kind: 'int', min: 0, default: () => '2000', doc: 'how long a scheduler trusts a client token or an agent credential it has checked before reading it again (a token revoked on another scheduler works here this long at most; an agent removed or registered anywhere is forgotten at once); 0: read on every call' },
  maxStreamsPerToken: { env: 'TRAINYARD_MAX_STREAMS_PER_TOKEN', flag: 'max-streams-per-token', kind: 'int', default: () => '64', doc: 'concurrent log/watch/download streams one token may hold; more are refused (RESOURCE_EXHAUSTED)' },
  maxDatasetPushMb: { env: 'TRAINYARD_MAX_DATASET_PUSH_MB', flag: 'max-dataset-push-mb', kind: 'int', default: () => '262144', doc: 'the most one dataset push may send, in MiB (default 256 GiB); a bigger push is refused and leaves nothing' },
  maxDatasetPushFiles: { env: 'TRAINYARD_MAX_DATASET_PUSH_FILES', flag: 'max-dataset-push-files', kind: 'int', default: () => '1000000', doc: 'the most files one dataset push may send; more are refused and the push leaves nothing' },
  maxLogLinesPerAttempt: { env: 'TRAINYARD_MAX_LOG_LINES', flag: 'max-log-lines', kind: 'int', default: () => '200000', doc: 'log lines kept per attempt; later ones are dropped with a marker' },
  // Webhooks (scheduler/webhooks/): delivery tries, their backoff and how long they go on, and which
  // otherwise refused addresses (loopback, link-local, private) a hook may still reach.
  webhookAllowHosts: { env: 'TRAINYARD_WEBHOOK_ALLOW_HOSTS', flag: 'webhook-allow-hosts', kind: 'string', default: () => '', doc: 'comma-separated host names, IPs or CIDRs (127.0.0.1, 10.0.0.0/8, hooks.internal) a webhook may reach although they are loopback, link-local or private; empty: none (no SSRF into the box or its network)' },
  webhookTimeoutMs: { env: 'TRAINYARD_WEBHOOK_TIMEOUT_MS', flag: 'webhook-timeout-ms', kind: 'int', min: 100, default: () => '10000', doc: 'a webhook POST not answered this long counts as failed (and is tried again)' },
  webhookBackoffMs: { env: 'TRAINYARD_WEBHOOK_BACKOFF_MS', flag: 'webhook-backoff-ms', kind: 'int', min: 1, default: () => '5000', doc: 'wait before the first retry of a failed webhook delivery; each later retry waits twice the one before, at most 30 minutes' },
  webhookRetryMinutes: { env: 'TRAINYARD_WEBHOOK_RETRY_MINUTES', flag: 'webhook-retry-minutes', kind: 'int', min: 1, default: () => '1440', doc: 'a webhook delivery not accepted (2xx) this many minutes after its event is given up (state failed)' },
  webhookLogRetentionDays: { env: 'TRAINYARD_WEBHOOK_LOG_RETENTION_DAYS', flag: 'webhook-log-retention-days', kind: 'int', default: () => '30', doc: 'finished webhook deliveries (delivered or failed) and their tries older than this many days are deleted by the placing scheduler, 1,000 a statement; pending ones never; 0 keeps them for ever' },
  maxMetricPointsPerRun: { env: 'TRAINYARD_MAX_METRIC_POINTS', flag: 'max-metric-points', kind: 'int', default: () => '5000000', doc: 'metric points kept per run (all names, attempts and system samples together); later ones are dropped and counted (run metrics: dropped)' },
  storageJanitorIntervalS: { env: 'TRAINYARD_STORAGE_JANITOR_INTERVAL_S', flag: 'storage-janitor-interval-s', kind: 'int', min: 1, default: () => '60', doc: 'how often the placing scheduler finishes interrupted deletes and applies the projects\' retention (--keep-runs, --keep-versions), up to 100 of each a pass' },
  eventsRetentionDays: { env: 'TRAINYARD_EVENTS_RETENTION_DAYS', flag: 'events-retention-days', kind: 'int', default: () => '30', doc: 'events (trainyard events) older than this many days are deleted by the placing scheduler; 0 keeps them for ever' },
});

export const agentSettings = spec({
  ...commonSettings,
  ...configFileSetting,
  ...storageSettings,
  ...clientTlsSettings,
  joinToken: { env: 'TRAINYARD_JOIN_TOKEN', flag: 'join-token', kind: 'string', secret: true, default: () => '', doc: 'join token (trainyard agents join-token create), exchanged at the first Register for a credential kept in the work dir' },
  name: { env: 'TRAINYARD_AGENT_NAME', flag: 'name', kind: 'string', default: () => os.hostname(), doc: 'agent name, unique in the fleet' },
  workDir: { env: 'TRAINYARD_WORK_DIR', flag: 'work-dir', kind: 'string', default: () => path.join(home, '.local/share/trainyard/agent'), doc: 'where runs get their package copy and data' },
  dataCacheMb: { env: 'TRAINYARD_DATA_CACHE_MB', flag: 'data-cache-mb', kind: 'int', default: () => '10240', doc: 'dataset files kept in <work dir>/data-cache (by object key and ETag) for later runs, MiB; least recently used go first (0: none)' },
  listingTrustSeconds: { env: 'TRAINYARD_LISTING_TRUST_SECONDS', flag: 'listing-trust-seconds', kind: 'int', max: 86_400, default: () => '60', doc: 'a run of a dataset generation this agent listed at most this long ago uses that listing instead of listing the dataset again (every dataset push is a new generation, seen at once; files written into the bucket behind Trainyard\'s back are seen within this); 0: every run lists its dataset' },
  logSpillMb: { env: 'TRAINYARD_LOG_SPILL_MB', flag: 'log-spill-mb', kind: 'int', default: () => '1024', doc: 'a run\'s log lines kept on disk (<work dir>/*.log-spill.jsonl) while the scheduler is away, MiB per run; lines past it are dropped and counted in the run\'s log (0: no cap)' },
  venvDir: { env: 'TRAINYARD_VENV_DIR', flag: 'venv-dir', kind: 'string', default: () => path.join(home, '.cache/trainyard/venvs'), doc: 'one venv per distinct requirements.txt, reused' },
  python: { env: 'TRAINYARD_PYTHON', flag: 'python', kind: 'string', default: () => 'python3', doc: 'Python used to create venvs' },
  pipIndexUrl: { env: 'TRAINYARD_PIP_INDEX_URL', flag: 'pip-index-url', kind: 'string', default: () => '', doc: 'pip --index-url for requirements (empty: pip\'s own default)' },
  pipFindLinks: { env: 'TRAINYARD_PIP_FIND_LINKS', flag: 'pip-find-links', kind: 'string', default: () => '', doc: 'pip --find-links (a folder of wheels, say)' },
  installer: { env: 'TRAINYARD_INSTALLER', flag: 'installer', kind: 'string', default: () => 'uv', doc: 'what builds venvs: uv (the one in PATH, else installed once into <work dir>/tools/uv from the index above; requirements that are all wheels of an index go through a shared cache only the agent writes) or pip; pip also when no uv can be had', oneOf: ['uv', 'pip'] },
  venvCacheGb: { env: 'TRAINYARD_VENV_CACHE_GB', flag: 'venv-cache-gb', kind: 'string', default: () => '50', doc: 'the most disk the venv dir (venvs and the shared uv cache) may use, GiB (decimals allowed); past it the least recently used venvs no run is using are removed (0: no cap)' },
  nvidiaSmi: { env: 'TRAINYARD_NVIDIA_SMI', flag: 'nvidia-smi', kind: 'string', default: () => 'nvidia-smi', doc: 'nvidia-smi to read GPUs from (none when absent)' },
  sysSampleSeconds: { env: 'TRAINYARD_SYS_SAMPLE_SECONDS', flag: 'sys-sample-seconds', kind: 'int', default: () => '5', doc: 'how often the agent samples a running run\'s GPUs (nvidia-smi), cgroup CPU, memory and I/O into its metrics (sys/...), seconds (0: never)' },
  labels: { env: 'TRAINYARD_LABELS', flag: 'labels', kind: 'labels', default: () => '', doc: 'agent labels, k=v,k=v, matched by run selectors' },
  acceptProjects: { env: 'TRAINYARD_ACCEPT_PROJECTS', flag: 'accept-projects', kind: 'string', default: () => '', doc: 'p,q: take only these projects\' runs (sent at Register; the scheduler places no other project\'s run here); empty: every project\'s' },
  advertiseAddr: { env: 'TRAINYARD_ADVERTISE_ADDR', flag: 'advertise-addr', kind: 'string', default: () => '', doc: 'the address other agents reach this one at, a multi-agent run\'s MASTER_ADDR when its rank 0 is here (empty: the address the scheduler sees it call from)' },
  rendezvousPorts: { env: 'TRAINYARD_RENDEZVOUS_PORTS', flag: 'rendezvous-ports', kind: 'string', default: () => '29500-29599', doc: 'LO-HI: the ports a multi-agent run\'s rank 0 here may listen on (MASTER_PORT), one per run placed at once' },
  cpus: { env: 'TRAINYARD_CPUS', flag: 'cpus', kind: 'int', default: () => String(os.availableParallelism()), doc: 'CPUs advertised' },
  maxRuns: { env: 'TRAINYARD_MAX_RUNS', flag: 'max-runs', kind: 'int', default: () => '0', doc: 'run slots: at most this many runs at once on this agent, whatever CPUs they ask for (0: as many as --cpus)' },
  warmInterpreters: { env: 'TRAINYARD_WARM_INTERPRETERS', flag: 'warm-interpreters', kind: 'int', default: () => '4', doc: 'venvs kept warm: a Python per venv that forks a clean child per run instead of starting an interpreter (0: every run starts its own)' },
  memoryMb: { env: 'TRAINYARD_MEMORY_MB', flag: 'memory-mb', kind: 'int', default: () => String(Math.floor(os.totalmem() / 1048576)), doc: 'memory advertised, MiB' },
  killGraceMs: { env: 'TRAINYARD_KILL_GRACE_MS', flag: 'kill-grace-ms', kind: 'int', default: () => '10000', doc: 'SIGTERM to SIGKILL grace for a killed run' },
  runDiskMb: { env: 'TRAINYARD_RUN_DISK_MB', flag: 'run-disk-mb', kind: 'int', default: () => '0', doc: 'disk one run may fill in its folder, MiB (each file capped by RLIMIT_FSIZE, the folder measured every 2 s and at the end); past it the run fails "disk limit" (0: no limit)' },
  maxOutputMb: { env: 'TRAINYARD_MAX_OUTPUT_MB', flag: 'max-output-mb', kind: 'int', default: () => '0', doc: 'most one run may upload (artifacts, data copies, package version), MiB; more fails the run "output limit" before anything is uploaded (0: no limit)' },
  drainTimeoutMs: { env: 'TRAINYARD_DRAIN_TIMEOUT_MS', flag: 'drain-timeout-ms', kind: 'int', default: () => '600000', doc: 'on SIGTERM, how long running runs may finish before they are handed back' },
  onStop: { env: 'TRAINYARD_ON_STOP', flag: 'on-stop', kind: 'string', default: () => 'drain', doc: 'what SIGTERM (systemctl stop/restart) does: drain (take no new runs, let running ones finish for --drain-timeout-ms, then hand them back, and leave) or detach (leave at once without telling the scheduler, runs going on under their supervisors, for the agent restarted with the same --name and --work-dir to take over; runs not started yet are handed back). SIGUSR2 detaches whatever this says' },
  packagingTimeoutS: { env: 'TRAINYARD_PACKAGING_TIMEOUT_S', flag: 'packaging-timeout', kind: 'int', default: () => '1800', doc: 'the most a run waits for its environment (pip install of its requirements, or another run\'s build of the same), seconds; past it the run fails (0: no limit)' },
  downloadTimeoutS: { env: 'TRAINYARD_DOWNLOAD_TIMEOUT_S', flag: 'download-timeout', kind: 'int', default: () => '14400', doc: 'the most making a run\'s package and data local may take, seconds (each, from its start, retries included); past it the run fails saying so (0: no limit)' },
  uploadTimeoutS: { env: 'TRAINYARD_UPLOAD_TIMEOUT_S', flag: 'upload-timeout', kind: 'int', default: () => '14400', doc: 'the most uploading a run\'s outputs may take, seconds (retries included); past it the run fails saying so (0: no limit)' },
  prepareNext: { env: 'TRAINYARD_PREPARE_NEXT', flag: 'prepare-next', kind: 'string', default: () => 'true', doc: 'true: while a run trains, the agent asks the scheduler every 5 s which queued run it could run would most likely come to it next, and makes that run\'s data local (a staged folder), unpacks its package and builds its venv into the caches, so the GPU\'s gap between the two is about the next run\'s interpreter start; it holds no GPU and changes no placement, and is called off when another run is claimed or the agent stops (false: off)' },
  maxPendingUploads: { env: 'TRAINYARD_MAX_PENDING_UPLOADS', flag: 'max-pending-uploads', kind: 'int', min: 0, default: () => '2', doc: 'finished runs that may upload their outputs at once after giving their GPUs and slot back at process exit (the run stays Running, uploading, until its version commits); past it a finished run keeps its GPUs until one of those uploads ends (0: every run keeps its GPUs until its upload ends)' },
  reportTimeoutS: { env: 'TRAINYARD_REPORT_TIMEOUT_S', flag: 'report-timeout', kind: 'int', default: () => '3600', doc: 'the most an attempt retries its end report while the scheduler is away, seconds; past it the agent lets the attempt go and the scheduler takes it back (a lost attempt) when its heartbeats no longer hold it (0: for as long as the agent runs)' },
  transferRetries: { env: 'TRAINYARD_TRANSFER_RETRIES', flag: 'transfer-retries', kind: 'int', default: () => '6', doc: 'retries per object transfer, with backoff' },
  metricsListen: { env: 'TRAINYARD_METRICS_LISTEN', flag: 'metrics-listen', kind: 'string', default: () => '', doc: 'HTTP listen address for Prometheus /metrics, e.g. 127.0.0.1:9464 (empty: not served)' },
  runUids: { env: 'TRAINYARD_RUN_UIDS', flag: 'run-uids', kind: 'string', default: () => '61000-61063', doc: 'a root agent\'s pool of run uids, FIRST-LAST: each attempt and its venv build run as a uid no other live attempt holds (users trainyard-UID made when first used; leases in /run/trainyard/run-uids, shared by every agent on the box); "none": runs as the agent\'s own uid (single-tenant)' },
  sharedUid: { env: 'TRAINYARD_SHARED_UID', flag: 'shared-uid', kind: 'int', default: () => '0', doc: '1: allow more than one run slot while runs share the agent\'s uid (a non-root agent, or --run-uids none): single-tenant only, runs can read each other' },
  runAsUser: { env: 'TRAINYARD_RUN_AS_USER', flag: 'run-as-user', kind: 'string', default: () => '', doc: 'replaced by --run-uids: an agent given it refuses to start, saying so' },
});

export const clientSettings = spec({
  ...commonSettings,
  ...clientTlsSettings,
  token: { env: 'TRAINYARD_TOKEN', flag: 'token', kind: 'string', secret: true, default: () => '', doc: 'the token to call with (else the token file)' },
  ...tokenFileSetting,
});

type Value<K extends Kind> = K extends 'int' ? number : K extends 'labels' ? Readonly<Record<string, string>> : string;
export type Settings<S extends Record<string, SettingSpec>> = { readonly [K in keyof S]: Value<S[K]['kind']> };

export function parseLabels(text: string, what = 'labels'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw invalid(`${what}: "${part}" is not KEY=VALUE`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/** Values read from a config file, by flag name, as strings (cli/config-file.ts reads and checks it). */
export interface FileLayer { readonly path: string; readonly values: Readonly<Record<string, string>> }
type FlagValues = Readonly<Record<string, string | boolean | readonly string[] | readonly boolean[] | undefined>>;

/** Where one setting's value comes from: flag > variable > file > default. */
function resolve(s: SettingSpec, flags: FlagValues, env: NodeJS.ProcessEnv, file: FileLayer | undefined): { raw: string; source: string } {
  const fromFlag = flags[s.flag];
  if (typeof fromFlag === 'string') return { raw: fromFlag, source: `--${s.flag}` };
  const fromEnv = env[s.env];
  if (fromEnv !== undefined) return { raw: fromEnv, source: s.env };
  const fromFile = file?.values[s.flag];
  if (fromFile !== undefined) return { raw: fromFile, source: file!.path };
  return { raw: s.default(), source: 'default' };
}

export function compileSettings<S extends Record<string, SettingSpec>>(
  specs: S,
  flags: FlagValues,
  env: NodeJS.ProcessEnv = process.env,
  file?: FileLayer,
): Settings<S> {
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(specs)) {
    const { raw, source } = resolve(s, flags, env, file);
    const where = source === file?.path ? `${source}: ${s.flag}` : source;
    if (s.kind === 'int') {
      if (!/^\d+$/.test(raw)) throw invalid(`${where}: expected a non-negative integer, got "${raw}"`);
      if (s.min !== undefined && Number(raw) < s.min) throw invalid(`${where}: must be at least ${s.min}, got ${raw}`);
      if (s.max !== undefined && Number(raw) > s.max) throw invalid(`${where}: must be at most ${s.max}, got ${raw}`);
      out[key] = Number(raw);
    } else if (s.kind === 'labels') {
      out[key] = Object.freeze(parseLabels(raw, where));
    } else {
      if (s.oneOf && !s.oneOf.includes(raw)) throw invalid(`${where}: expected one of ${s.oneOf.join(', ')}, got "${raw}"`);
      out[key] = raw;
    }
  }
  return Object.freeze(out) as Settings<S>;
}

/** A setting whose value is a secret (declared so above): shown redacted. */
export const isSecretSetting = (s: SettingSpec): boolean => s.secret === true;

const REDACTED = '<redacted>';

/** A URL's password (postgres://user:PASSWORD@host) replaced; any other text unchanged. */
function redactUrlPasswords(value: string): string {
  return value.split(',').map((part) => {
    if (!URL.canParse(part)) return part;
    const u = new URL(part);
    if (!u.password) return part;
    u.password = 'REDACTED'; // (the URL setter would percent-encode <redacted>)
    return u.toString();
  }).join(',');
}

/** Every setting's effective value and where it came from, secrets redacted (--print-config). */
export function describeSettings(specs: Record<string, SettingSpec>, flags: FlagValues, env: NodeJS.ProcessEnv, file?: FileLayer):
  { flag: string; kind: Kind; value: string; source: string; redacted: boolean }[] {
  return Object.values(specs).map((s) => {
    const { raw, source } = resolve(s, flags, env, file);
    const secret = isSecretSetting(s) && raw !== '';
    const value = secret ? REDACTED : redactUrlPasswords(raw);
    return { flag: s.flag, kind: s.kind, value, source, redacted: secret || value !== raw };
  });
}

export type { SettingSpec };
