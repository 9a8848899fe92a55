// gRPC transport security from settings, in one place: the scheduler's ServerCredentials, and the
// ChannelCredentials that agents and the CLI dial with. No certificate configured means plaintext, as
// before (loopback installs, the demo); a scheduler reachable from a network should have one.
//   scheduler: --tls-cert/--tls-key (TLS), plus --tls-client-ca (every caller must present a certificate
//              signed by that CA: mTLS; it applies to the whole port, so CLIs then present one too)
//   agent/CLI: --tls-ca (verify the scheduler; setting it turns TLS on), --tls-client-cert/--tls-client-key
// Tokens and agent credentials travel as per-call metadata and work the same over either.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { invalid } from './errors.js';

export interface ServerTls { readonly tlsCert: string; readonly tlsKey: string; readonly tlsClientCa: string }
export interface ClientTls { readonly tlsCa: string; readonly tlsClientCert: string; readonly tlsClientKey: string }

function read(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw invalid(`${what} ${file} cannot be read: ${(err as Error).message}`);
  }
}

export function serverCredentials(s: ServerTls): grpc.ServerCredentials {
  if (!s.tlsCert && !s.tlsKey) {
    if (s.tlsClientCa) throw invalid('--tls-client-ca needs --tls-cert and --tls-key (client certificates are checked only over TLS)');
    return grpc.ServerCredentials.createInsecure();
  }
  if (!s.tlsCert || !s.tlsKey) throw invalid('--tls-cert and --tls-key go together');
  const pair = { cert_chain: read('--tls-cert', s.tlsCert), private_key: read('--tls-key', s.tlsKey) };
  const clientCa = s.tlsClientCa ? read('--tls-client-ca', s.tlsClientCa) : null;
  return grpc.ServerCredentials.createSsl(clientCa, [pair], clientCa !== null);
}

/** Whether a scheduler with these settings serves TLS (for its start-up log line). */
export const servesTls = (s: ServerTls) => s.tlsCert !== '';

/**
 * grpc-js sends the target host as the TLS ServerName, and Node warns (DEP0123) when that is an IP
 * address, on stderr of every CLI command. SNI means nothing for an IP: the certificate is still checked
 * against the address (its IP SAN). Only that one warning is dropped.
 */
let quietIpServerName = false;
function quietIpServerNameWarning(): void {
  if (quietIpServerName) return;
  quietIpServerName = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const o = rest[0];
    const code = typeof o === 'object' && o !== null ? (o as { code?: string }).code : rest[1];
    if (code === 'DEP0123') return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}

export function channelCredentials(s: ClientTls): grpc.ChannelCredentials {
  if (s.tlsCa) quietIpServerNameWarning();
  if (!s.tlsCa) {
    if (s.tlsClientCert || s.tlsClientKey) throw invalid('--tls-client-cert/--tls-client-key need --tls-ca (the scheduler is verified first)');
    return grpc.credentials.createInsecure();
  }
  if (Boolean(s.tlsClientCert) !== Boolean(s.tlsClientKey)) throw invalid('--tls-client-cert and --tls-client-key go together');
  return grpc.credentials.createSsl(
    read('--tls-ca', s.tlsCa),
    s.tlsClientKey ? read('--tls-client-key', s.tlsClientKey) : null,
    s.tlsClientCert ? read('--tls-client-cert', s.tlsClientCert) : null,
  );
}

/**
 * The CLI's TLS settings: its flags (cli/main.ts calls useClientTls once) over TRAINYARD_TLS_* variables.
 * Library users of the CLI's client (benchmarks, tests) get the variables.
 */
let clientTls: ClientTls | null = null;
export function useClientTls(s: ClientTls): void { clientTls = s; }
export function cliChannelCredentials(env: NodeJS.ProcessEnv = process.env): grpc.ChannelCredentials {
  return channelCredentials(clientTls ?? {
    tlsCa: env.TRAINYARD_TLS_CA ?? '', tlsClientCert: env.TRAINYARD_TLS_CLIENT_CERT ?? '', tlsClientKey: env.TRAINYARD_TLS_CLIENT_KEY ?? '',
  });
}

/** What to add to "cannot reach the scheduler": the likely TLS mistake, given how the CLI dialled. */
export function tlsHint(env: NodeJS.ProcessEnv = process.env): string {
  const ca = clientTls ? clientTls.tlsCa : (env.TRAINYARD_TLS_CA ?? '');
  const cert = clientTls ? clientTls.tlsClientCert : (env.TRAINYARD_TLS_CLIENT_CERT ?? '');
  if (!ca) return '; if it serves TLS, give its CA with --tls-ca or TRAINYARD_TLS_CA';
  return `; dialled over TLS trusting ${ca}: the scheduler's certificate must be signed by that CA and name this address` +
    (cert ? '' : ', and a scheduler started with --tls-client-ca also wants --tls-client-cert/--tls-client-key');
}
