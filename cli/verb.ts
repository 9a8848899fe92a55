// How a CLI verb is declared: one description (path, summary, arguments, flags with their documentation,
// examples, and the function that runs it) that the parser (cli/dispatch.ts), `--help` (cli/help.ts) and
// the shell completions (cli/completion.ts) all read, so a verb cannot exist without its help. Every verb
// is listed in cli/registry.ts.
import type { ParseArgsConfig } from 'node:util';

/** A flag: its parseArgs type plus what help shows. */
export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  /** The flag may be given several times; the handler gets an array. */
  readonly multiple?: boolean;
  /** One letter, for `-f`. */
  readonly short?: string;
  /** What the value looks like in help (`N`, `KEY=VALUE`); string flags only. */
  readonly value?: string;
  /** The default as a person reads it (help only: the handler applies it). */
  readonly default?: string;
  /** The verb refuses to run without it (checked before the handler is called). */
  readonly required?: boolean;
  /** The TRAINYARD_* variable that also sets it (daemon settings). */
  readonly env?: string;
  readonly description: string;
}
export type Flags = Readonly<Record<string, FlagSpec>>;

// Distributive over T and M, so a flag table of unknown shape (Flags) gets every kind of value.
type Value<T, M> = T extends 'boolean' ? (M extends true ? boolean[] : boolean) : (M extends true ? string[] : string);
type FlagValue<F extends FlagSpec> = Value<F['type'], F['multiple']>;

/** What a verb's handler receives: its flags by name (absent when not given) and its positional arguments. */
export interface Parsed<F extends Flags> {
  readonly values: { readonly [K in keyof F]?: FlagValue<F[K]> };
  readonly positionals: readonly string[];
}

/** A positional argument, for help and usage lines. */
export interface ArgSpec {
  readonly name: string;
  readonly description: string;
  readonly optional?: boolean;
  /** Takes every remaining word (last argument only). */
  readonly variadic?: boolean;
}

interface Described {
  /** The words that invoke it: ['run', 'train'] is `trainyard run train`. */
  readonly path: readonly [string, ...string[]];
  /** One line: what it does. */
  readonly summary: string;
  /** Where `trainyard --help` lists it (top-level entries only; sub-verbs follow their parent). */
  readonly section?: string;
}

/** A word that only groups sub-verbs (`run`, `tokens`): run alone, it prints its help and exits 2. */
export type GroupSpec = Described;

export interface VerbSpec<F extends Flags = Flags> extends Described {
  readonly args?: readonly ArgSpec[];
  readonly flags: F;
  /** At least one: what a person would type. */
  readonly examples: readonly [string, ...string[]];
  /** More text for --help: exit statuses, what a flag interacts with. */
  readonly details?: string;
  /**
   * 'client' (the default): a gRPC client of the scheduler; the global flags (--scheduler, --token, TLS)
   * are taken out before its own and `address` is where to call. 'local': runs here without calling the
   * scheduler (the daemons, which take those settings as flags of their own; completion; help).
   */
  readonly kind?: 'client' | 'local';
  // A method, not a function property: a VerbSpec<F> is then also a VerbSpec (of any flags) in the
  // registry's list, while verb() still checks the handler against F.
  run(input: Parsed<F>, address: string): Promise<number>;
}

/** What the registry holds: groups, and verbs of any flag shape. */
export type Command = GroupSpec | VerbSpec;

export const isVerb = (c: Command): c is VerbSpec => 'run' in c;

/** Declares a verb; the generic ties the handler's `values` to the declared flags. */
export function verb<const F extends Flags>(spec: VerbSpec<F>): VerbSpec<F> {
  return spec;
}

/** Declares a group of sub-verbs. */
export function group(spec: GroupSpec): GroupSpec {
  return spec;
}

/** Declares a flag table (so a handler can name its type before the verb is declared). */
export function flags<const F extends Flags>(f: F): F {
  return f;
}

/** The parseArgs options for a flag table (help text left out), with --help/-h that every verb takes. */
export function parseOptions(f: Flags): NonNullable<ParseArgsConfig['options']> {
  const out: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, s] of Object.entries(f)) {
    out[name] = { type: s.type, ...(s.multiple ? { multiple: true } : {}), ...(s.short ? { short: s.short } : {}) };
  }
  return out;
}

export const pathText = (c: Described): string => c.path.join(' ');
