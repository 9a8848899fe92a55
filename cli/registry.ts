// Every verb of the `trainyard` program, in the order `trainyard --help` lists them. A verb is declared
// once, beside its code (cli/verb.ts says how); adding it here is what makes it parse, answer --help
// and complete in the shells. test/e2e/cli-help.test.ts checks every entry.
import { daemonVerbs } from './commands/daemons.js';
import { packageVerbs } from './commands/packages.js';
import { datasetVerbs } from './commands/datasets.js';
import { runVerbs } from './commands/runs.js';
import { agentsVerbs } from './commands/agents.js';
import { projectsVerbs } from './commands/projects.js';
import { projectUsageVerbs } from './commands/project-usage.js';
import { doctorVerbs } from './commands/doctor.js';
import { tokensVerbs } from './commands/tokens.js';
import { scheduleVerbs } from './commands/schedules.js';
import { eventVerbs } from './commands/events.js';
import { webhookVerbs } from './commands/webhooks.js';
import { datasetDeleteVerb, packageDeleteVerb, runDeleteVerb } from './commands/deletes.js';
import { bashCompletion, zshCompletion } from './completion.js';
import { helpFor, topHelp } from './help.js';
import { resolve } from './dispatch.js';
import { group, verb, type Command } from './verb.js';
import { invalid } from '../shared/errors.js';
import { didYouMean } from './suggest.js';

const shellVerbs = [
  verb({
    path: ['help'], section: 'Help and shell', kind: 'local', summary: 'help for the program or a verb (same as VERB --help)',
    args: [{ name: 'VERB...', description: 'the verb, e.g. run train', optional: true, variadic: true }], flags: {},
    examples: ['trainyard help', 'trainyard help run train'],
    run: async ({ positionals }) => {
      if (positionals.length === 0) { console.log(topHelp(commands)); return 0; }
      const found = resolve(commands, positionals);
      if (!found || found.rest.length) {
        const said = positionals.join(' ');
        throw invalid(`unknown command "${said}"${didYouMean(said, commands.map((c) => c.path.join(' ')))}; see trainyard --help`);
      }
      console.log(helpFor(found.command, commands));
      return 0;
    },
  }),
  group({ path: ['completion'], section: 'Help and shell', summary: 'print a shell completion script' }),
  verb({
    path: ['completion', 'bash'], kind: 'local', summary: 'print the bash completion script', flags: {},
    examples: ['source <(trainyard completion bash)', 'trainyard completion bash > /etc/bash_completion.d/trainyard'],
    run: async () => { process.stdout.write(bashCompletion(commands)); return 0; },
  }),
  verb({
    path: ['completion', 'zsh'], kind: 'local', summary: 'print the zsh completion script', flags: {},
    examples: ['source <(trainyard completion zsh)', 'trainyard completion zsh > "${fpath[1]}/_trainyard"'],
    run: async () => { process.stdout.write(zshCompletion(commands)); return 0; },
  }),
];

export const commands: readonly Command[] = [
  ...daemonVerbs, ...packageVerbs, packageDeleteVerb, ...datasetVerbs, datasetDeleteVerb, ...runVerbs, runDeleteVerb, ...scheduleVerbs, ...eventVerbs, ...webhookVerbs, ...agentsVerbs, ...projectsVerbs, ...projectUsageVerbs, ...doctorVerbs, ...tokensVerbs, ...shellVerbs,
];
