// `trainyard scheduler` and `trainyard agent`: compile settings, start, and shut down in two stages.
import { parse } from '../args.js';
import { agentSettings, compileSettings, describeSettings, schedulerSettings, settingFlags } from '../../shared/settings.js';
import { createLogger } from '../../shared/logger.js';
// The daemons themselves are imported inside each command (cli/ never imports scheduler/ or agent/
// statically), so `trainyard scheduler --help` starts without loading pg, kysely or nats.

function onSignals(stop: (force: boolean) => Promise<void>, log: { info(o: object, m: string): void }): Promise<number> {
  return new Promise((resolve) => {
    let count = 0;
    const handler = (sig: NodeJS.Signals) => {
      count++;
      log.info({ signal: sig, forceful: count > 1 }, count > 1 ? 'second signal: stopping now' : 'shutting down gracefully (signal again to force)');
      stop(count > 1).then(() => resolve(0), () => resolve(1));
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
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

export async function schedulerCommand(args: string[]): Promise<number> {
  const { values } = parse(args, { ...settingFlags(schedulerSettings), help: { type: 'boolean' } });
  if (values.help) { console.log(`trainyard scheduler [flags]\n\n${describeSettings(schedulerSettings)}`); return 0; }
  const settings = compileSettings(schedulerSettings, values);
  const log = createLogger('trainyard-scheduler', settings.logLevel);
  const { Scheduler } = await import('../../scheduler/scheduler.js');
  const scheduler = new Scheduler(settings, log);
  await scheduler.start();
  return exitSoon(await onSignals((force) => scheduler.stop(force), log));
}

export async function agentCommand(args: string[]): Promise<number> {
  const { values } = parse(args, { ...settingFlags(agentSettings), help: { type: 'boolean' } });
  if (values.help) { console.log(`trainyard agent [flags]\n\n${describeSettings(agentSettings)}`); return 0; }
  const settings = compileSettings(agentSettings, values);
  const log = createLogger('trainyard-agent', settings.logLevel, { agent: settings.name });
  const { AgentDaemon } = await import('../../agent/agent.js');
  const agent = new AgentDaemon(settings, log);
  await agent.start();
  return exitSoon(await Promise.race([onSignals((force) => agent.stop(force), log), agent.stopped.then(() => 0)]));
}
