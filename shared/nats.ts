// NATS connect options from settings, for the scheduler and the agent. Credentials are options, never
// part of the URL (nats.js 2.x ignores user:pass there). A server that requires TLS is met with TLS
// whatever the URL's scheme (nats:// or tls://); --nats-ca verifies it against a private CA.
import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, type ConnectionOptions, type NatsConnection } from 'nats';
import { ErrorCodes, TrainyardError, invalid } from './errors.js';

export interface NatsSettings {
  readonly natsUrl: string;
  readonly natsUser: string;
  readonly natsPassword: string;
  readonly natsCreds: string;
  readonly natsCa: string;
}

export function natsOptions(s: NatsSettings, name: string): ConnectionOptions {
  const opts: ConnectionOptions = { servers: s.natsUrl.split(','), maxReconnectAttempts: -1, reconnectTimeWait: 500, name };
  if (s.natsCreds && s.natsUser) throw invalid('--nats-creds and --nats-user are alternatives; set one');
  if (s.natsCreds) {
    let creds: Buffer;
    try { creds = readFileSync(s.natsCreds); } catch (err) { throw invalid(`--nats-creds ${s.natsCreds} cannot be read: ${(err as Error).message}`); }
    opts.authenticator = credsAuthenticator(new Uint8Array(creds));
  } else if (s.natsUser) {
    opts.user = s.natsUser;
    opts.pass = s.natsPassword;
  }
  if (s.natsCa) opts.tls = { caFile: s.natsCa };
  return opts;
}

/**
 * Connects with natsOptions' options. nats.js's errors name only the symptom ("unable to verify the first
 * certificate", "Authorization Violation"), which a daemon that cannot start printed as all it knew: this
 * says it was NATS and where, and for a certificate what to check.
 */
export async function connectNats(s: NatsSettings, opts: ConnectionOptions): Promise<NatsConnection> {
  try {
    return await connect(opts);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const hint = !/certificate|self.signed|ssl|tls/i.test(message) ? ''
      : s.natsCa ? ` (is --nats-ca ${s.natsCa} the CA that signed the server's certificate?)`
        : ' (the system CAs do not trust the server\'s certificate; give its CA with --nats-ca)';
    throw new TrainyardError(ErrorCodes.Unavailable, `NATS ${s.natsUrl}: cannot connect: ${message}${hint}`, { cause: err });
  }
}
