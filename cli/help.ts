// --help, made from the verbs' declarations (cli/verb.ts): usage lines, flags with their defaults, the
// global client flags, sub-verbs and examples. Nothing here is written by hand per verb.
import { isVerb, pathText, type Command, type FlagSpec, type Flags, type VerbSpec } from './verb.js';
import { clientSettings, clientTlsSettings, type SettingSpec } from '../shared/settings.js';

const WIDTH = 100;

/** A setting as a flag (value shown as VALUE, its variable and default in help). */
export function settingFlag(s: SettingSpec): FlagSpec & { type: 'string'; multiple?: false } {
  return { type: 'string', value: 'VALUE', env: s.env, default: s.default(), description: s.doc };
}

/** The flags every client verb takes wherever they stand; cli/main.ts takes them out before the verb's own. */
export const globalFlags: Flags = Object.fromEntries(
  [clientSettings.scheduler, clientSettings.token, clientSettings.tokenFile, ...Object.values(clientTlsSettings)].map((s) => [s.flag, settingFlag(s)]),
);

const flagName = (name: string, f: FlagSpec) => `--${name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`;

/** `trainyard doctor [--repair] [--json]`, wrapped under its first words when long. */
export function usageLine(v: VerbSpec): string {
  const words = [`trainyard ${pathText(v)}`];
  // What follows a `--` goes last, after the verb's own flags (which must come before it).
  const afterDashes = (a: { name: string }) => a.name.startsWith('--');
  for (const a of (v.args ?? []).filter((x) => !afterDashes(x))) words.push(a.optional ? `[${a.name}]` : a.name);
  for (const [name, f] of Object.entries(v.flags)) {
    const w = flagName(name, f) + (f.multiple ? '...' : '');
    words.push(f.required ? w : `[${w}]`);
  }
  for (const a of (v.args ?? []).filter(afterDashes)) words.push(a.optional ? `[${a.name}]` : a.name);
  const indent = ' '.repeat(words[0]!.length + 1);
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > WIDTH) { lines.push(line); line = indent + w; } else line = line ? `${line} ${w}` : w;
  }
  lines.push(line);
  return lines.join('\n');
}

function flagTable(f: Flags): string {
  const rows = Object.entries(f).map(([name, s]) => {
    const notes = [s.required ? 'required' : '', s.multiple ? 'repeatable' : '', s.env ? `env ${s.env}` : '',
      s.default ? `default: ${s.default}` : ''].filter(Boolean);
    return [`${s.short ? `-${s.short}, ` : ''}${flagName(name, s)}`, `${s.description}${notes.length ? ` (${notes.join('; ')})` : ''}`] as const;
  });
  const w = Math.min(34, Math.max(...rows.map((r) => r[0].length)));
  return rows.map(([l, d]) => `  ${l.padEnd(w)}  ${d}`).join('\n');
}

const children = (c: Command, all: readonly Command[]) =>
  all.filter((x) => x.path.length === c.path.length + 1 && c.path.every((p, i) => x.path[i] === p));

function subVerbList(c: Command, all: readonly Command[]): string {
  const kids = children(c, all);
  const w = Math.max(...kids.map((k) => pathText(k).length));
  return kids.map((k) => `  trainyard ${pathText(k).padEnd(w)}  ${k.summary}`).join('\n');
}

const EXIT = 'Exit status: 0 on success, 2 on a usage error (unknown verb or flag, bad or missing value), 1 on any other error.';

/** `trainyard run train --help`. */
export function verbHelp(v: VerbSpec, all: readonly Command[]): string {
  const parts = [`trainyard ${pathText(v)} — ${v.summary}`, `Usage:\n  ${usageLine(v).replace(/\n/g, '\n  ')}`];
  if (v.args?.length) parts.push(`Arguments:\n${v.args.map((a) => `  ${a.name.padEnd(12)}  ${a.description}${a.optional ? ' (optional)' : ''}`).join('\n')}`);
  parts.push(`Flags:\n${flagTable({ ...v.flags, help: { type: 'boolean', short: 'h', description: 'show this help' } })}`);
  if ((v.kind ?? 'client') === 'client') parts.push(`Global flags (any client verb, anywhere on the line):\n${flagTable(globalFlags)}`);
  if (children(v, all).length) parts.push(`Sub-commands:\n${subVerbList(v, all)}`);
  if (v.details) parts.push(v.details);
  parts.push(`Examples:\n${v.examples.map((e) => `  ${e}`).join('\n')}`, EXIT);
  return parts.join('\n\n');
}

/** `trainyard run --help`: the group's sub-verbs. */
export function groupHelp(c: Command, all: readonly Command[]): string {
  return [`trainyard ${pathText(c)} — ${c.summary}`, `Sub-commands:\n${subVerbList(c, all)}`,
    `\`trainyard ${pathText(c)} VERB --help\` shows a verb's flags and examples.`].join('\n\n');
}

export const helpFor = (c: Command, all: readonly Command[]): string => (isVerb(c) ? verbHelp(c, all) : groupHelp(c, all));

/** `trainyard --help`: every verb, by section, with its summary. */
export function topHelp(all: readonly Command[]): string {
  const sections = new Map<string, VerbSpec[]>();
  for (const c of all) {
    const top = all.find((x) => x.path.length === 1 && x.path[0] === c.path[0]);
    const s = top?.section ?? 'Other';
    if (!sections.has(s)) sections.set(s, []);
    if (isVerb(c)) sections.get(s)!.push(c);
  }
  const words = (c: VerbSpec) => [pathText(c), ...(c.args ?? []).map((a) => (a.optional ? `[${a.name}]` : a.name))].join(' ');
  const w = Math.max(...all.filter(isVerb).map((c) => words(c).length));
  const body = [...sections].filter(([, cs]) => cs.length).map(([s, cs]) => `${s}:\n${cs.map((c) => `  trainyard ${words(c).padEnd(w)}  ${c.summary}`).join('\n')}`);
  return ['trainyard — training pipelines on a fleet of GPU machines', ...body,
    `Global flags (any client verb, anywhere on the line):\n${flagTable(globalFlags)}`,
    '`trainyard VERB --help` (or `trainyard help VERB`) shows a verb\'s flags, defaults and examples;\n' +
    '`trainyard completion bash|zsh` prints a shell completion script.', EXIT].join('\n\n');
}
