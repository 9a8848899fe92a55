// From argv to a verb of the registry: find the verb by its words, answer --help, refuse an unknown
// verb or flag with the nearest known one (exit 2), check required flags, then call the verb with its
// parsed flags. Every refusal here is a usage error (ErrorCodes.InvalidArgument, exit 2).
import { parseArgs } from 'node:util';
import { isVerb, parseOptions, pathText, type Command, type Parsed, type VerbSpec } from './verb.js';
import { globalFlags, helpFor, topHelp } from './help.js';
import { didYouMean } from './suggest.js';
import { takeTokenFlags } from './token.js';
import { takeTlsFlags } from './tls.js';
import { invalid } from '../shared/errors.js';
import { clientSettings, compileSettings } from '../shared/settings.js';

/** Pulls --scheduler out of the arguments wherever it stands, so every client verb takes it. */
function schedulerAddress(args: string[]): { address: string; rest: string[] } {
  const rest: string[] = [];
  let flag: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--scheduler') {
      flag = args[++i];
      // Not the next flag taken for an address, nor the default used in silence.
      if (flag === undefined || isFlag(flag)) throw invalid('--scheduler: give the address, e.g. --scheduler 10.0.0.5:50051');
    } else if (a.startsWith('--scheduler=')) flag = a.slice('--scheduler='.length);
    else rest.push(a);
  }
  if (flag !== undefined && flag.trim() === '') throw invalid('--scheduler: give the address, e.g. --scheduler 10.0.0.5:50051');
  const s = compileSettings(clientSettings, { scheduler: flag });
  return { address: s.scheduler, rest };
}

const isFlag = (a: string) => a.startsWith('-') && a !== '-';

/** The deepest command whose words start argv, and the arguments after them (null: the first word is unknown). */
export function resolve(all: readonly Command[], argv: readonly string[]): { command: Command; rest: string[] } | null {
  let command: Command | undefined;
  let n = 0;
  while (n < argv.length) {
    const next = all.find((c) => c.path.length === n + 1 && c.path.every((p, i) => p === argv[i]));
    if (!next) break;
    command = next;
    n++;
  }
  return command ? { command, rest: argv.slice(n) } : null;
}

function unknownCommand(all: readonly Command[], parent: readonly string[], word: string): Error {
  const names = all.filter((c) => c.path.length === parent.length + 1 && parent.every((p, i) => c.path[i] === p)).map(pathText);
  const full = [...parent, word].join(' ');
  return invalid(`unknown command "${full}"${didYouMean(full, names)}; see trainyard ${parent.length ? `${parent.join(' ')} ` : ''}--help`);
}

/** Refuses a flag the verb does not declare, naming the nearest one it does. */
function checkFlags(v: VerbSpec, args: string[]): void {
  const options = parseOptions(v.flags);
  const { tokens } = parseArgs({ args, options, allowPositionals: true, strict: false, tokens: true });
  const shorts = new Set(Object.values(options).map((o) => o.short).filter(Boolean));
  for (const tok of tokens) {
    if (tok.kind !== 'option' || tok.name in options || shorts.has(tok.name)) continue;
    const names = [...Object.keys(options), ...((v.kind ?? 'client') === 'client' ? Object.keys(globalFlags) : [])];
    throw invalid(`unknown flag ${tok.rawName} for "trainyard ${pathText(v)}"${didYouMean(tok.name, names, (n) => `--${n}`)}; see trainyard ${pathText(v)} --help`);
  }
}

function parseVerb(v: VerbSpec, args: string[]) {
  try {
    return parseArgs({ args, options: parseOptions(v.flags), allowPositionals: true, strict: true });
  } catch (err) {
    // An unknown flag: name it and the nearest known one. Other errors (a value missing or ambiguous,
    // a value given to a boolean) keep parseArgs' own words, which say how to write it.
    if ((err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') checkFlags(v, args);
    throw invalid(`${(err as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, '').replace(/\s*\n/g, ' ')}; see trainyard ${pathText(v)} --help`);
  }
}

/** Runs argv (without the program name); returns the exit status. Throws TrainyardErrors for main to print. */
export async function dispatch(all: readonly Command[], argv: readonly string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') { console.log(topHelp(all)); return 0; }
  const found = resolve(all, argv);
  if (!found) throw isFlag(argv[0]!) ? invalid(`give a verb before the flags (${argv[0]}); see trainyard --help`) : unknownCommand(all, [], argv[0]!);
  const { command, rest } = found;
  const hasChildren = all.some((c) => c.path.length === command.path.length + 1 && command.path.every((p, i) => c.path[i] === p));
  const firstWord = rest.find((a) => !isFlag(a));
  if (!isVerb(command)) {
    if (firstWord !== undefined && rest[0] === firstWord) throw unknownCommand(all, command.path, firstWord);
    if (rest.includes('--help') || rest.includes('-h')) { console.log(helpFor(command, all)); return 0; }
    console.error(helpFor(command, all));
    return 2;
  }
  const v = command;
  if (hasChildren && !v.args?.length && firstWord !== undefined && rest[0] === firstWord) throw unknownCommand(all, v.path, firstWord);
  let args = rest;
  let address = '';
  if ((v.kind ?? 'client') === 'client') ({ address, rest: args } = schedulerAddress(takeTlsFlags(takeTokenFlags(rest))));
  const { values, positionals } = parseVerb(v, args);
  if (values.help) { console.log(helpFor(v, all)); return 0; }
  for (const [name, f] of Object.entries(v.flags)) {
    if (f.required && (values[name] === undefined || values[name] === '')) throw invalid(`missing --${name}; see trainyard ${pathText(v)} --help`);
  }
  const needed = (v.args ?? []).filter((a) => !a.optional && !a.variadic);
  if (positionals.length < needed.length) {
    const missing = needed.slice(positionals.length).map((a) => a.name).join(' ');
    throw invalid(`trainyard ${pathText(v)}: missing ${missing} (usage: trainyard ${pathText(v)} ${needed.map((a) => a.name).join(' ')}); see trainyard ${pathText(v)} --help`);
  }
  const most = v.args?.at(-1)?.variadic ? Infinity : v.args?.length ?? 0;
  if (positionals.length > most) {
    throw invalid(`trainyard ${pathText(v)} takes ${most === 0 ? 'no arguments' : `at most ${most} argument${most === 1 ? '' : 's'}`}, got "${positionals.join(' ')}"; see trainyard ${pathText(v)} --help`);
  }
  // parseArgs types a multiple flag as (string | boolean)[]; parsed with v's own flags, each is one or the other.
  return v.run({ values: values as Parsed<typeof v.flags>['values'], positionals }, address);
}
