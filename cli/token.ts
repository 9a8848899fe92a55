// Which token the CLI calls with: --token, else TRAINYARD_TOKEN, else the token file (--token-file,
// TRAINYARD_TOKEN_FILE, default ~/.config/trainyard/token, which a bootstrapping scheduler writes).
import { readFileSync } from 'node:fs';
import { clientSettings, compileSettings } from '../shared/settings.js';

let flags: { token?: string; 'token-file'?: string } = {};

/** Pulls --token and --token-file out of the arguments wherever they stand, so every client verb takes them. */
export function takeTokenFlags(args: string[]): string[] {
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--(token|token-file)(?:=(.*))?$/.exec(a);
    if (!m) { rest.push(a); continue; }
    const key = m[1] as 'token' | 'token-file';
    flags = { ...flags, [key]: m[2] ?? args[++i] ?? '' };
  }
  return rest;
}

/** The token file the CLI reads (for messages). */
export function tokenFile(env: NodeJS.ProcessEnv = process.env): string {
  return compileSettings(clientSettings, flags, env).tokenFile;
}

/** The token to send, or '' when there is none (the scheduler then says so: UNAUTHENTICATED). */
export function cliToken(env: NodeJS.ProcessEnv = process.env): string {
  const s = compileSettings(clientSettings, flags, env);
  if (s.token) return s.token.trim();
  try {
    return readFileSync(s.tokenFile, 'utf8').trim();
  } catch {
    return '';
  }
}

/** What to tell a user whose call was refused for want of a valid token. */
export function tokenHelp(): string {
  return 'get a token from an admin (trainyard tokens create --project P --role member) and pass it with --token, ' +
    `TRAINYARD_TOKEN, or the token file (${tokenFile()}); on the scheduler's machine, its first start wrote an admin token to its token file`;
}
