// The one program: `trainyard scheduler|agent` start the daemons; every other verb is a gRPC client.
// The daemons are imported only when asked for (a dynamic import below): a client verb must not load pg,
// kysely or nats, which cost start-up time and do not belong on a user's laptop
// (test/e2e/cli-imports.test.ts checks it; the lint rule trainyard/boundaries forbids a static import).
import { packageCommand } from './commands/packages.js';
import { datasetCommand } from './commands/datasets.js';
import { runCommand } from './commands/runs.js';
import { agentsCommand } from './commands/agents.js';
import { projectsCommand } from './commands/projects.js';
import { doctorCommand } from './commands/doctor.js';
import { tokensCommand } from './commands/tokens.js';
import { schedulesCommand } from './commands/schedules.js';
import { eventsCommand } from './commands/events.js';
import { takeTokenFlags, tokenHelp } from './token.js';
import { takeTlsFlags } from './tls.js';
import { color, safeText } from './format.js';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';
import { clientSettings, compileSettings, describeSettings } from '../shared/settings.js';

const HELP = `trainyard — training pipelines on a fleet of GPU machines

Daemons:
  trainyard scheduler [--help]              serve clients and agents (state in Postgres)
  trainyard agent [--help]                  run trainings on this machine

Packages and datasets:
  trainyard package push DIR|ZIP --name NAME [--json]
  trainyard package versions NAME [--json]
  trainyard dataset push DIR --name NAME [--json]
  trainyard dataset list [--json]

Runs:
  trainyard run train --package NAME [--version X.Y] --dataset NAME[/SUB] [--gpu | --gpus N]
                      [--gpu-model M] [--gpu-memory-mb N] [--cpus N] [--memory-mb N] [--selector k=v]...
                      [--env KEY=VALUE]... [--timeout SECONDS] [--priority N] [--project P]
                      [--idempotency-key K] [--wait] [--json]
  trainyard run get ID [--json]
  trainyard run list [--status S] [--schedule NAME] [--limit N] [--json]
  trainyard run logs ID [--follow] [--after ATTEMPT:SEQ] [--json]
  trainyard run outputs ID --to DIR
  trainyard run kill ID

Schedules (trainyard schedules --help):
  trainyard schedules create NAME (--cron "EXPR" [--timezone TZ] | --at TIME) -- run train FLAGS...
  trainyard schedules list|get|pause|resume|delete|run-now [NAME] [--json]

ML log (trainyard events --help):
  trainyard events [--project P] [--kind K] [--since T] [--limit N] [--follow] [--json]

Fleet:
  trainyard agents [--json]
  trainyard agents drain NAME
  trainyard projects [--json]
  trainyard projects set NAME [--max-runs N|none] [--max-gpus N|none] [--max-priority N|none]

Operators:
  trainyard doctor [--repair] [--json]      impossible states now, and what the sweep recorded (exit 1 if any)

Tokens (admin):
  trainyard tokens create --project P --role member|reader|admin [--name N] [--expires 30d] [--json]
  trainyard tokens list [--json]            ids, projects, roles, expiry, last use; never a secret
  trainyard tokens revoke ID
  trainyard agents join-token create [--expires 1h] [--name N] [--json]

Every client verb calls with --token, else TRAINYARD_TOKEN, else the token file (--token-file).

Client settings (flag, variable, meaning):
${describeSettings(clientSettings)}
`;

/** Pulls --scheduler out of the arguments wherever it stands, so every client verb takes it. */
function schedulerAddress(args: string[]): { address: string; rest: string[] } {
  const rest: string[] = [];
  let flag: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--scheduler') flag = args[++i];
    else if (a.startsWith('--scheduler=')) flag = a.slice('--scheduler='.length);
    else rest.push(a);
  }
  const s = compileSettings(clientSettings, { scheduler: flag });
  return { address: s.scheduler, rest };
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  try {
    switch (cmd) {
      case 'scheduler': return await (await import('./commands/daemons.js')).schedulerCommand(args);
      case 'agent': return await (await import('./commands/daemons.js')).agentCommand(args);
      case undefined: case 'help': case '--help': case '-h':
        console.log(HELP);
        return 0;
    }
    const { address, rest } = schedulerAddress(takeTlsFlags(takeTokenFlags(args)));
    switch (cmd) {
      case 'package': return await packageCommand(rest, address);
      case 'dataset': return await datasetCommand(rest, address);
      case 'run': return await runCommand(rest, address);
      case 'agents': return await agentsCommand(rest, address);
      case 'projects': return await projectsCommand(rest, address);
      case 'doctor': return await doctorCommand(rest, address);
      case 'tokens': return await tokensCommand(rest, address);
      case 'schedules': return await schedulesCommand(rest, address);
      case 'events': return await eventsCommand(rest, address);
      default:
        console.error(`${color.red('error')}: unknown command "${cmd}"\n\n${HELP}`);
        return 2;
    }
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
