// The one program: `trainyard scheduler|agent` start the daemons; every other verb is a gRPC client.
// Every verb is declared once (cli/verb.ts) and listed in cli/registry.ts; cli/dispatch.ts parses argv
// against that list, and --help and the shell completions are generated from it.
// The daemons are imported only when asked for (a dynamic import in cli/commands/daemons.ts): a client
// verb must not load pg, kysely or nats, which cost start-up time and do not belong on a user's laptop
// (test/e2e/cli-imports.test.ts checks it; the lint rule trainyard/boundaries forbids a static import).
//
// Exit status: 0 success; 2 a usage error (unknown verb or flag, missing or malformed value, bad input
// refused before anything is created); 1 any other error (the scheduler unreachable or refusing, a run
// that did not succeed with --wait, doctor finding violations).
import { commands } from './registry.js';
import { dispatch } from './dispatch.js';
import { tokenHelp } from './token.js';
import { color, safeText } from './format.js';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';

export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(commands, argv);
  } catch (err) {
    if (err instanceof TrainyardError) {
      const json = argv.includes('--json');
      const help = err.code === ErrorCodes.Unauthenticated ? tokenHelp() : '';
      if (json) console.error(JSON.stringify({ error: { code: err.code, message: err.message, ...(help ? { help } : {}) } }));
      else console.error(`${color.red('error')}: ${safeText(err.message)}${help ? `\n${help}` : ''}`);
      return err.code === ErrorCodes.InvalidArgument || err.code === ErrorCodes.InvalidPackage ? 2 : 1;
    }
    throw err;
  }
}
