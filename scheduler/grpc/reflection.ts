// gRPC server reflection (grpc.reflection.v1 and v1alpha), so grpcurl and other tools can list and call
// the scheduler's services without the .proto file. What it describes is trainyard.proto plus the health
// service (grpc.health.v1), loaded here for that purpose alone.
//
// protobufjs names a map field's entry type after the field (`Env` for `map<string, string> env`), where
// protoc, and so Go's descriptor checks in grpcurl, require `EnvEntry`: grpcurl refuses the whole file
// ("invalid map: incorrect implicit map entry name"; grpcurl issue #519). fixMapEntries renames each entry
// type to <Field>Entry, and the field's reference to it, before the descriptors are served.
import path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProto } from 'grpc-health-check';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { projectRoot } from '../../shared/proto.js';

interface Field { name?: string; typeName?: string }
interface Message { name?: string; field?: Field[]; nestedType?: Message[]; options?: { mapEntry?: boolean } | null }
interface FileDescriptor { messageType?: Message[] }
interface Codec { decode(b: Uint8Array): unknown; encode(m: unknown): { finish(): Uint8Array } }
const FileDescriptorProto = (descriptor as unknown as { FileDescriptorProto: Codec }).FileDescriptorProto;

/** protoc's name for the entry type of map field `name`: snake_case to CamelCase, then "Entry". */
export const mapEntryName = (field: string): string =>
  `${field.split('_').map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join('')}Entry`;

function fixMessage(m: Message): void {
  for (const nested of m.nestedType ?? []) {
    fixMessage(nested);
    if (!nested.options?.mapEntry || !nested.name) continue;
    const old = nested.name;
    // The field that uses this entry type; protobufjs refers to it by its bare (relative) name.
    const field = (m.field ?? []).find((f) => f.typeName === old || f.typeName?.endsWith(`.${old}`));
    if (!field?.name) continue;
    nested.name = mapEntryName(field.name);
    field.typeName = field.typeName === old ? nested.name : `${field.typeName!.slice(0, -old.length)}${nested.name}`;
  }
}

/** One serialized FileDescriptorProto with its map entry types named as protoc names them. */
export function fixMapEntries(bin: Uint8Array): Buffer {
  const file = FileDescriptorProto.decode(bin) as FileDescriptor;
  for (const m of file.messageType ?? []) fixMessage(m);
  return Buffer.from(FileDescriptorProto.encode(file).finish());
}

/** The package definition reflection describes: trainyard.proto and health, map entries fixed. */
export function reflectionDefinition(): protoLoader.PackageDefinition {
  const def = protoLoader.loadSync([path.join(projectRoot(), 'proto', 'trainyard.proto'), healthProto], {
    keepCase: true, includeDirs: [path.join(projectRoot(), 'proto')],
  });
  // Every type of a file carries the same descriptors: fix each distinct file once.
  const fixed = new Map<string, Buffer>();
  const fix = (b: Buffer) => {
    const key = b.toString('base64');
    if (!fixed.has(key)) fixed.set(key, fixMapEntries(b));
    return fixed.get(key)!;
  };
  const out: protoLoader.PackageDefinition = {};
  for (const [name, d] of Object.entries(def)) {
    out[name] = 'fileDescriptorProtos' in d && Array.isArray(d.fileDescriptorProtos) ? { ...d, fileDescriptorProtos: d.fileDescriptorProtos.map(fix) } as typeof d : d;
  }
  return out;
}

export function reflectionService(): ReflectionService {
  return new ReflectionService(reflectionDefinition());
}
