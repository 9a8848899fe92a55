// `trainyard scheduler` and `trainyard agent`: compile settings, start, and shut down in two stages.
import { verb, type Flags, type Parsed } from '../verb.js';
import { settingFlag } from '../help.js';
import {
  agentSettings, compileSettings, configFileSetting, describeSettings, schedulerSettings, type SettingSpec, type Settings,
} from '../../shared/settings.js';
// The daemons themselves, and the logger, are imported inside each command (cli/ never imports
// scheduler/ or agent/ statically), so `trainyard scheduler --help` starts without loading pg, kysely or nats.

function onSignals(stop: (force: boolean) => Promise<void>, log: { info(o: object, m: string): void }, detach?: (force: boolean) => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    const counts = { stop: 0, detach: 0 };
    const handler = (sig: NodeJS.Signals) => {
      // SIGUSR2 (the agent's: detach now, whatever --on-stop says; agent/detach.ts) is counted apart: it
      // never forces a drain under way into handing its runs back.
      const which = sig === 'SIGUSR2' ? 'detach' : 'stop';
      const force = ++counts[which] > 1;
      const words = which === 'detach' ? ['detaching', 'second SIGUSR2: detaching now'] : ['shutting down gracefully (signal again to force)', 'second signal: stopping now'];
      log.info({ signal: sig, forceful: force }, words[force ? 1 : 0]!);
      (which === 'detach' ? detach! : stop)(force).then(() => resolve(0), () => resolve(1));
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
    if (detach) process.on('SIGUSR2', handler);
  });
}

/**
 * Once a daemon has stopped, the process ends even if a library left a handle open (a keep-alive socket,
 * a timer): the daemon's own shutdown already flushed what matters.
 */
function exitSoon(code: number): number {
  setTimeout(() => process.exit(code), 200).unref();
  return code;
}

/** A daemon's flags: one per setting, documented from the settings table (shared/settings.ts). */
const settingsFlags = (specs: Record<string, SettingSpec>) => Object.fromEntries(Object.values(specs).map((s) => [s.flag, settingFlag(s)]));
const printConfigFlag = {
  'print-config': { type: 'boolean', description: 'print the effective configuration (each value and where it came from, secrets redacted) and exit' },
} as const satisfies Flags;
const schedulerFlags = { ...settingsFlags(schedulerSettings), ...printConfigFlag };
const agentFlags = { ...settingsFlags(agentSettings), ...printConfigFlag };

/**
 * The settings in their layers: flags, TRAINYARD_* variables, then the config file (--config or
 * TRAINYARD_CONFIG), then defaults. With --print-config they are printed instead (null: exit 0).
 */
async function layeredSettings<S extends Record<string, SettingSpec>>(specs: S, values: Readonly<Record<string, string | boolean | undefined>>, daemon: string): Promise<Settings<S> | null> {
  const flag = values[configFileSetting.config.flag];
  const path = typeof flag === 'string' ? flag : process.env[configFileSetting.config.env] ?? '';
  const config = path ? await import('../config-file.js') : null;
  const file = config?.readConfigFile(path, specs, daemon);
  const settings = compileSettings(specs, values, process.env, file);
  if (!values['print-config']) return settings;
  const { formatConfig } = config ?? await import('../config-file.js');
  process.stdout.write(formatConfig(describeSettings(specs, values, process.env, file), daemon));
  return null;
}

async function scheduler({ values }: Parsed<typeof schedulerFlags>): Promise<number> {
  const settings = await layeredSettings(schedulerSettings, values, 'scheduler');
  if (!settings) return 0;
  const { createLogger } = await import('../../shared/logger.js');
  const log = createLogger('trainyard-scheduler', settings.logLevel);
  if (settings.config) log.info({ file: settings.config }, 'config file read');
  const { Scheduler } = await import('../../scheduler/scheduler.js');
  const scheduler = new Scheduler(settings, log);
  await scheduler.start();
  return exitSoon(await onSignals((force) => scheduler.stop(force), log));
}

async function agent({ values }: Parsed<typeof agentFlags>): Promise<number> {
  const settings = await layeredSettings(agentSettings, values, 'agent');
  if (!settings) return 0;
  const { createLogger } = await import('../../shared/logger.js');
  const log = createLogger('trainyard-agent', settings.logLevel, { agent: settings.name });
  if (settings.config) log.info({ file: settings.config }, 'config file read');
  const { AgentDaemon } = await import('../../agent/agent.js');
  const agent = new AgentDaemon(settings, log);
  await agent.start();
  return exitSoon(await Promise.race([onSignals((force) => agent.onSignal(force), log, (force) => agent.detach(force)), agent.stopped.then(() => agent.exitCode)]));
}

const SETTINGS_NOTE = 'Each flag is also its TRAINYARD_* variable (the flag wins over the variable), and a key of the --config '
  + 'file (TOML or YAML by its extension, keyed by flag name: `minio-endpoint = "http://minio:9000"` in a .toml file, '
  + '`minio-endpoint: http://minio:9000` in a .yaml one), which both win over. Unknown keys are refused. '
  + '--print-config shows every value and where it came from, secrets redacted.';

export const daemonVerbs = [
  verb({
    path: ['scheduler'], section: 'Daemons', kind: 'local', summary: 'the scheduler daemon: serves clients and agents (state in Postgres), logs pino JSON',
    flags: schedulerFlags, run: scheduler, details: SETTINGS_NOTE,
    examples: ['trainyard scheduler', 'TRAINYARD_DATABASE_URL=postgres://u:p@db/trainyard trainyard scheduler --listen 0.0.0.0:50051 --http-listen 0.0.0.0:8080',
      'trainyard scheduler --config /etc/trainyard/scheduler.toml --print-config'],
  }),
  verb({
    path: ['agent'], section: 'Daemons', kind: 'local', summary: 'the agent daemon: runs trainings on this machine\'s GPUs',
    flags: agentFlags, run: agent, details: `${SETTINGS_NOTE} Signals: SIGTERM and SIGINT drain, or detach with --on-stop detach (a second one `
      + 'forces); SIGUSR2 detaches whatever --on-stop says: the agent exits 0 at once and its runs go on, for the agent started again with '
      + 'the same --name and --work-dir to take over.',
    examples: ['trainyard agent --scheduler 10.0.0.1:50051 --join-token "$JOIN_TOKEN" --labels zone=a', 'trainyard agent --config /etc/trainyard/agent.yaml --print-config'],
  }),
];
