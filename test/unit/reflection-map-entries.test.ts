// grpcurl (Go's descriptor checks) refuses a map field whose entry type is not named <Field>Entry, and
// protobufjs names it after the field alone. The descriptors reflection serves are fixed; this checks the fix.
import t from 'tap';
import path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { fixMapEntries, mapEntryName, reflectionDefinition } from '../../scheduler/grpc/reflection.js';
import { projectRoot } from '../../shared/proto.js';

interface Msg { name: string; field: { name: string; typeName?: string }[]; nestedType: Msg[]; options?: { mapEntry?: boolean } }
const decode = (b: Uint8Array) => (descriptor as unknown as { FileDescriptorProto: { decode(b: Uint8Array): { messageType: Msg[] } } }).FileDescriptorProto.decode(b);

/** "Message.field → entry type name" for every map field of a file. */
function mapFields(file: { messageType: Msg[] }): string[] {
  const out: string[] = [];
  for (const m of file.messageType) {
    for (const n of m.nestedType.filter((x) => x.options?.mapEntry)) {
      const f = m.field.find((x) => x.typeName === n.name);
      out.push(`${m.name}.${f?.name ?? '?'} → ${n.name}`);
    }
  }
  return out.sort();
}

t.test('map entry types are renamed to <Field>Entry, and the fields follow', async (t) => {
  t.equal(mapEntryName('env'), 'EnvEntry');
  t.equal(mapEntryName('gpu_labels'), 'GpuLabelsEntry', 'snake_case becomes CamelCase, as protoc does');
  const raw = protoLoader.loadSync(path.join(projectRoot(), 'proto', 'trainyard.proto'), { keepCase: true });
  const bin = (raw['trainyard.v1.SubmitRunRequest'] as { fileDescriptorProtos: Buffer[] }).fileDescriptorProtos[0]!;
  const before = mapFields(decode(bin));
  t.ok(before.includes('SubmitRunRequest.env → Env'), `protobufjs names the entry after the field (${before.join(', ')})`);
  const after = mapFields(decode(fixMapEntries(bin)));
  t.equal(after.length, before.length, 'every map field keeps its entry type');
  t.ok(after.length >= 5, 'trainyard.proto has its map fields (env, selector, labels)');
  for (const m of after) {
    const [field, entry] = m.split(' → ');
    t.equal(entry, mapEntryName(field!.split('.')[1]!), `${m}: named as protoc names it`);
  }
});

t.test('the definition reflection serves: trainyard and health, every file fixed', async (t) => {
  const def = reflectionDefinition();
  t.ok(def['trainyard.v1.Trainyard'], 'trainyard.v1.Trainyard is described');
  t.ok(def['grpc.health.v1.Health'], 'grpc.health.v1.Health is described');
  for (const [name, d] of Object.entries(def)) {
    if (!('fileDescriptorProtos' in d)) continue;
    for (const b of d.fileDescriptorProtos as Buffer[]) {
      const bad = mapFields(decode(b)).filter((m) => !m.endsWith('Entry'));
      if (bad.length) t.fail(`${name}: ${bad.join(', ')}`);
    }
  }
  t.pass('no map entry type without the Entry suffix');
});
