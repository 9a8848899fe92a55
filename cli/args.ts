import { readFileSync } from 'node:fs';
import { invalid } from '../shared/errors.js';
import type { FlagSpec } from './verb.js';

/** The --json flag most verbs take. */
export const jsonFlag = { type: 'boolean', description: 'print JSON, for scripts' } as const satisfies FlagSpec;

export function requireString(value: unknown, flag: string): string {
  if (typeof value !== 'string' || value === '') throw invalid(`missing --${flag}`);
  return value;
}

export function intFlag(value: unknown, flag: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return 0;
  const n = Number(value);
  if (!/^\d+$/.test(String(value)) || n < min || n > max) throw invalid(`--${flag}: expected an integer from ${min} to ${max}, got "${String(value)}"`);
  return n;
}

/** A signed 32-bit integer flag (--priority); undefined: `fallback`. */
export function signedIntFlag(value: unknown, flag: string, fallback = 0): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^-?\d+$/.test(String(value)) || n < -2_147_483_648 || n > 2_147_483_647) {
    throw invalid(`--${flag}: expected a whole number from -2147483648 to 2147483647, got "${String(value)}"`);
  }
  return n;
}

/**
 * `--secret KEY=VALUE` or `--secret KEY=@FILE` (the file's content, less one trailing newline, so a key
 * file written by an editor or `echo` works). A secret given on the command line is visible to other
 * users of the machine in `ps`; the @file form is not.
 */
export function secretValues(values: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(keyValues(values, 'secret'))) {
    if (!v.startsWith('@')) { out[k] = v; continue; }
    const file = v.slice(1);
    let text: string;
    try { text = readFileSync(file, 'utf8'); } catch (err) { throw invalid(`--secret ${k}=@${file}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`); }
    out[k] = text.replace(/\r?\n$/, '');
  }
  return out;
}

export function keyValues(values: unknown, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of (values as string[] | undefined) ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw invalid(`--${flag} "${kv}": expected KEY=VALUE`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}
