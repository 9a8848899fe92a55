// Loads proto/trainyard.proto at run time; the types come from proto-loader's generator (shared/proto/gen).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProtoGrpcType } from './proto/gen/trainyard.js';

export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'proto', 'trainyard.proto'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find proto/trainyard.proto above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}

let cached: ProtoGrpcType | undefined;
export function loadProto(): ProtoGrpcType {
  if (cached) return cached;
  const def = protoLoader.loadSync(path.join(projectRoot(), 'proto', 'trainyard.proto'), {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  cached = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
  return cached;
}

/** Channel options both sides share: big enough messages for chunks, keepalive to notice dead peers. */
export const channelOptions: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
  'grpc.max_send_message_length': 16 * 1024 * 1024,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  // grpc-js backs off up to 2 minutes between reconnects by default; an agent that waited that long after
  // a scheduler restart would be declared lost. Bounded, it is back within about two seconds.
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 2_000,
};

export type * from './proto/gen/index.js';

/**
 * A gRPC target for one address or several ("10.0.0.1:50051,10.0.0.2:50051"): several become one channel
 * that fails over between schedulers (grpc-js's ipv4:/ipv6: multi-address targets with pick_first).
 */
export function grpcTarget(address: string): string {
  const parts = address.split(',').map((a) => a.trim()).filter(Boolean);
  if (parts.length <= 1) return address;
  const v6 = parts.every((p) => p.startsWith('['));
  return `${v6 ? 'ipv6' : 'ipv4'}:${parts.join(',')}`;
}
