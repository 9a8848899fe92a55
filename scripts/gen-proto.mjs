// Generates TypeScript types for proto/trainyard.proto with @grpc/proto-loader's own generator, so the
// services' handlers and clients are typed from the one .proto file. Output is build-only (gitignored).
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const out = path.join(root, 'shared/proto/gen');
rmSync(out, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [
    path.join(root, 'node_modules/@grpc/proto-loader/build/bin/proto-loader-gen-types.js'),
    'trainyard.proto',
    '--longs=Number', '--enums=String', '--defaults', '--oneofs', '--keepCase',
    '--grpcLib=@grpc/grpc-js', '--importFileExtension=.js', '--outDir', out,
    `--includeDirs=${path.join(root, 'proto')}`,
  ],
  { stdio: 'inherit' },
);

// One barrel for the message types, so code imports them from shared/proto.ts.
const { readdirSync, writeFileSync } = await import('node:fs');
const v1 = path.join(out, 'trainyard', 'v1');
const lines = readdirSync(v1).filter((f) => f.endsWith('.ts')).sort()
  .map((f) => `export type * from './trainyard/v1/${f.replace(/\.ts$/, '.js')}';`);
writeFileSync(path.join(out, 'index.ts'), lines.join('\n') + '\n');
