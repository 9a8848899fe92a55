// The proto is the API's reference for clients in other languages (examples/clients/python reads no
// TypeScript), so every field and every RPC says what it means: a trailing `// ...` on its line, or a
// comment line right above it. Messages need none of their own: the RPC that takes one and its fields say
// it. The header keeps the versioning note (what may change within trainyard.v1). protobufjs parses the
// same file, so a declaration this line-based reader fails to see fails the test instead of passing unseen.
import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { root } from '../helpers/stack.js';

interface Declaration { kind: 'field' | 'rpc'; name: string; line: number; documented: boolean }

const OPEN = /^(message|service|enum|oneof)\s+(\w+)\s*\{/;
const RPC = /^rpc\s+(\w+)\s*\(/;
// `type name = N` with the type a scalar, a message, `repeated X` or `map<K, V>`; an enum value has no type.
const FIELD = /^(?:repeated\s+)?(?:map\s*<[^>]*>|[A-Za-z_][\w.]*)\s+(\w+)\s*=\s*\d+\s*(?:\[[^\]]*\])?\s*;/;
const ENUM_VALUE = /^(\w+)\s*=\s*-?\d+\s*(?:\[[^\]]*\])?\s*;/;

/** Every field and RPC of a proto file, named Message.field (Outer.Inner.field) or Service.Rpc. */
function declarations(text: string): Declaration[] {
  const out: Declaration[] = [];
  const scopes: { kind: string; name: string }[] = [];
  let previousIsComment = false;
  text.split('\n').forEach((raw, i) => {
    const cut = raw.indexOf('//');
    let code = (cut < 0 ? raw : raw.slice(0, cut)).trim();
    const trailing = cut < 0 ? '' : raw.slice(cut + 2).trim();
    // A comment line right above documents the first declaration on this line only.
    let above = previousIsComment;
    previousIsComment = raw.trim().startsWith('//');
    const qualified = (name: string) => [...scopes.filter((s) => s.kind !== 'oneof').map((s) => s.name), name].join('.');
    const scope = () => scopes[scopes.length - 1];
    while (code) {
      let m: RegExpExecArray | null;
      if ((m = OPEN.exec(code))) {
        scopes.push({ kind: m[1]!, name: m[2]! });
      } else if (code.startsWith('}')) {
        scopes.pop();
        m = /^\}\s*;?/.exec(code)!;
      } else if ((m = RPC.exec(code)) && scope()?.kind === 'service') {
        out.push({ kind: 'rpc', name: qualified(m[1]!), line: i + 1, documented: above || trailing !== '' });
        m = /^rpc[^;]*;/.exec(code) ?? /^rpc.*$/.exec(code)!;
      } else if (scope()?.kind === 'enum' && (m = ENUM_VALUE.exec(code))) {
        // Enum values are held to the same rule as fields.
        out.push({ kind: 'field', name: qualified(m[1]!), line: i + 1, documented: above || trailing !== '' });
      } else if ((m = FIELD.exec(code)) && scope() && scope()!.kind !== 'service') {
        out.push({ kind: 'field', name: qualified(m[1]!), line: i + 1, documented: above || trailing !== '' });
      } else if ((m = /^(?:syntax|package|option|import|reserved)\b[^;]*;/.exec(code))) {
        // Nothing to document here.
      } else {
        throw new Error(`proto line ${i + 1}: cannot read "${code}"`);
      }
      code = code.slice(m[0].length).trim();
      above = false;
    }
  });
  return out;
}

/** The same names, from protobufjs: every field (map fields included) and every method. */
function declaredByProtobufjs(text: string): string[] {
  const names: string[] = [];
  const visit = (ns: protobuf.NamespaceBase, prefix: string[]) => {
    for (const child of ns.nestedArray) {
      const here = [...prefix, child.name];
      if (child instanceof protobuf.Type) for (const f of child.fieldsArray) names.push([...here, f.name].join('.'));
      if (child instanceof protobuf.Enum) for (const v of Object.keys(child.values)) names.push([...here, v].join('.'));
      if (child instanceof protobuf.Service) for (const m of child.methodsArray) names.push([...here, m.name].join('.'));
      if (child instanceof protobuf.Namespace) visit(child, here);
    }
  };
  const parsed = protobuf.parse(text, { keepCase: true });
  const pkg = parsed.root.lookup(parsed.package!) as protobuf.Namespace;
  visit(pkg, []);
  return names.sort();
}

const protoText = readFileSync(path.join(root, 'proto', 'trainyard.proto'), 'utf8');

t.test('the reader finds what is undocumented, and nothing else', async (t) => {
  const sample = [
    'syntax = "proto3";',
    'package x.v1;',
    'service S {',
    '  // Does a thing.',
    '  rpc A(M) returns (M);',
    '  rpc B(M) returns (M);',
    '}',
    'message M {',
    '  string a = 1;              // documented',
    '  // documented above',
    '  repeated string b = 2;',
    '  map<string, string> c = 3;',
    '  oneof part { bytes d = 4; }',
    '  message Inner { int32 e = 1; }  // trailing',
    '}',
    'message L { string f = 1; }',
  ].join('\n');
  const undocumented = declarations(sample).filter((d) => !d.documented).map((d) => d.name);
  t.same(undocumented, ['S.B', 'M.c', 'M.d', 'L.f']);
  t.same(declarations(sample).map((d) => d.name).sort(), declaredByProtobufjs(sample));
});

t.test('every field and RPC of proto/trainyard.proto carries a comment', async (t) => {
  const all = declarations(protoText);
  t.same(all.map((d) => d.name).sort(), declaredByProtobufjs(protoText), 'the line reader sees every field and RPC protobufjs sees');
  t.ok(all.filter((d) => d.kind === 'field').length > 250, 'the fields were found');
  t.ok(all.filter((d) => d.kind === 'rpc').length > 30, 'the RPCs were found');
  const missing = all.filter((d) => !d.documented).map((d) => `line ${d.line}: ${d.kind} ${d.name}`);
  t.same(missing, [], 'add a trailing `// ...` (or a comment line above) saying what each of these means');
});

t.test('the header keeps the versioning note', async (t) => {
  const header = protoText.slice(0, protoText.indexOf('\npackage '));
  t.match(protoText, /^package trainyard\.v1;$/m, 'the package is trainyard.v1');
  t.match(header, /Versioning\. This is package trainyard\.v1/, 'the note names the package');
  t.match(header, /never renumbered/, 'it says what never changes');
  t.match(header, /What may change within v1:/, 'it says what may change');
  t.match(header, /trainyard\.v2/, 'it says where a breaking change goes');
});
