// A daemon's config file (`trainyard scheduler --config /etc/trainyard/scheduler.toml`): TOML or YAML, told
// apart by the file's extension (a guess from the content would read a TOML line `a = 1` as a YAML string),
// one key per setting, named as its flag without the dashes in front (`minio-endpoint = "http://minio:9000"`,
// `minio-endpoint: http://minio:9000`). It is the layer under the TRAINYARD_* variables and the flags
// (shared/settings.ts). Read only by the daemon commands (imported lazily), so client verbs load neither parser.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { parse as parseYaml, stringify, YAMLParseError } from 'yaml';
import { invalid } from '../shared/errors.js';
import { configFileSetting, type FileLayer, type SettingSpec, type describeSettings } from '../shared/settings.js';
import { didYouMean } from './suggest.js';

/** One value of the file as the settings take it: a string, an integer, or (labels) a mapping of strings. */
function scalar(file: string, key: string, s: SettingSpec, v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'bigint') return String(v);
  if (s.kind === 'labels' && v !== null && typeof v === 'object' && !Array.isArray(v)) {
    return Object.entries(v as Record<string, unknown>).map(([k, x]) => `${k}=${scalar(file, `${key}.${k}`, { ...s, kind: 'string' }, x)}`).join(',');
  }
  const what = v === null ? 'nothing (null)' : Array.isArray(v) ? 'a list' : v instanceof Date ? 'a date'
    : typeof v === 'object' ? 'a mapping' : `${typeof v} ${String(v)}`;
  throw invalid(`${file}: "${key}" must be a ${s.kind === 'int' ? 'number' : s.kind === 'labels' ? 'k=v,k=v string or a mapping' : 'string'}, got ${what}`);
}

/** The formats by extension; anything else is refused rather than guessed. */
const formats: Record<string, 'TOML' | 'YAML'> = { '.toml': 'TOML', '.yaml': 'YAML', '.yml': 'YAML' };

/**
 * The file's document, parsed as its extension says. A syntax error names the file and the line (the
 * parsers' own messages carry a code excerpt over several lines; the first line is the reason).
 */
function parseDocument(file: string, text: string): unknown {
  const format = formats[path.extname(file).toLowerCase()];
  if (!format) {
    throw invalid(`${file}: a config file is TOML (.toml) or YAML (.yaml, .yml), told apart by its extension; rename it to one of those`);
  }
  try {
    return format === 'TOML' ? parseToml(text) : parseYaml(text);
  } catch (err) {
    if (err instanceof TomlError) {
      const reason = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw invalid(`${file}: not valid TOML at line ${err.line}, column ${err.column}: ${reason}`);
    }
    if (err instanceof YAMLParseError) {
      const at = err.linePos?.[0];
      const reason = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      throw invalid(`${file}: not valid YAML${at ? ` at line ${at.line}, column ${at.col}` : ''}: ${reason}`);
    }
    throw invalid(`${file}: not valid ${format}: ${(err as Error).message}`);
  }
}

/** Reads and checks the file against the daemon's settings: every key must be one of them. */
export function readConfigFile(file: string, specs: Record<string, SettingSpec>, daemon: string): FileLayer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw invalid(`--config ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const doc = parseDocument(file, text);
  if (doc === null || doc === undefined) return { path: file, values: {} }; // an empty file sets nothing
  if (typeof doc !== 'object' || Array.isArray(doc)) throw invalid(`${file}: expected a mapping of settings (key: value), got ${Array.isArray(doc) ? 'a list' : typeof doc}`);
  const byFlag = new Map(Object.values(specs).map((s) => [s.flag, s]));
  byFlag.delete(configFileSetting.config.flag);
  const values: Record<string, string> = {};
  for (const [key, v] of Object.entries(doc)) {
    const s = byFlag.get(key);
    if (!s) {
      const hint = key === configFileSetting.config.flag ? ' (a config file cannot name another)' : didYouMean(key, byFlag.keys());
      throw invalid(`${file}: unknown key "${key}": not a setting of trainyard ${daemon}${hint}; keys are the flag names of \`trainyard ${daemon} --help\``);
    }
    values[key] = scalar(file, key, s, v);
  }
  return { path: file, values };
}

/** --print-config: YAML that could be a config file, each line saying where its value came from. */
export function formatConfig(rows: ReturnType<typeof describeSettings>, daemon: string): string {
  const width = Math.max(...rows.map((r) => r.flag.length));
  const lines = [`# trainyard ${daemon}: the effective configuration (flag > TRAINYARD_* variable > config file > default); secrets redacted`];
  for (const r of rows) {
    const value = r.kind === 'int' && /^\d+$/.test(r.value) ? r.value : stringify(r.value).trimEnd();
    lines.push(`${`${r.flag}:`.padEnd(width + 1)} ${value}  # ${r.source === 'default' ? 'default' : `from ${r.source}`}${r.redacted ? ', redacted' : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
