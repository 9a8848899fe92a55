// `trainyard tokens create|list|revoke` and `trainyard agents join-token create` (admin only: the
// scheduler refuses anyone else). A new token is printed once; lists never hold a secret.
import { Api } from '../client.js';
import { parse } from '../args.js';
import { color, safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import type { CreatedToken__Output } from '../../shared/proto.js';

export const TOKENS_HELP = `trainyard tokens — client tokens (admin only)

  trainyard tokens create --project P --role member|reader|admin [--name N] [--expires 30d] [--json]
      prints the new token once (tyt_<id>_<secret>); the scheduler keeps only its hash
  trainyard tokens list [--json]
      id, name, project, role, created, expires, revoked, last used (never a secret)
  trainyard tokens revoke ID
      the token is refused from its next call on

Roles: admin (the fleet and every project), member (its project's packages, datasets and runs),
reader (reads its project's). --expires takes a number and a unit: 30s, 15m, 12h, 30d (default: never).`;

export const JOIN_TOKEN_HELP = `trainyard agents join-token create [--expires 1h] [--name N] [--json]   (admin only)

  prints a join token once: start an agent with --join-token TOKEN (or TRAINYARD_JOIN_TOKEN). At its first
  Register the agent exchanges it for its own credential, kept in its work dir (identity, mode 0600).
  A join token may join several agents until it expires (default 1h) or is revoked (trainyard tokens revoke ID).`;

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** "30d" → seconds; undefined → 0 (never / the default). */
export function parseDuration(v: unknown, flag: string): number {
  if (v === undefined) return 0;
  const m = /^(\d+)([smhd])$/.exec(String(v));
  if (!m || Number(m[1]) <= 0) throw invalid(`--${flag}: expected a positive number and a unit (s, m, h, d), e.g. 30d; got "${String(v)}"`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

function printCreated(t: CreatedToken__Output, json: boolean | undefined, what: string): void {
  if (json) { console.log(JSON.stringify(t, null, 2)); return; }
  const i = t.info!;
  console.log(t.token);
  console.error(color.dim(`${what} ${i.id} (${i.role}${i.role === 'join' ? '' : ` of project ${safeText(i.project)}`})` +
    `${i.expires_at ? `, expires ${i.expires_at}` : ', never expires'}. Shown once: keep it now.`));
}

export async function tokensCommand(args: string[], address: string): Promise<number> {
  const { values, positionals } = parse(args, {
    project: { type: 'string' }, role: { type: 'string' }, name: { type: 'string' }, expires: { type: 'string' },
    json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  });
  const verb = positionals[0];
  if (values.help || verb === undefined || verb === 'help') { console.log(TOKENS_HELP); return values.help || verb === 'help' ? 0 : 2; }
  if (!['create', 'list', 'revoke'].includes(verb)) throw invalid(`unknown command "tokens ${verb}"; see trainyard tokens --help`);
  if (verb === 'create') {
    if (!values.project) throw invalid('tokens create: give --project');
    if (!values.role) throw invalid('tokens create: give --role member, reader or admin');
    if (!['member', 'reader', 'admin'].includes(values.role)) throw invalid(`--role: expected member, reader or admin, got "${values.role}"`);
  }
  if (verb === 'revoke' && !positionals[1]) throw invalid('tokens revoke: give the token id (trainyard tokens list shows them)');
  const expires = parseDuration(values.expires, 'expires');
  const api = await Api.connect(address);
  try {
    if (verb === 'create') {
      printCreated(await api.createToken({ project: values.project, role: values.role, name: values.name ?? '', expires_in_seconds: expires }), values.json, 'token');
    } else if (verb === 'list') {
      const { tokens } = await api.listTokens();
      if (values.json) console.log(JSON.stringify(tokens, null, 2));
      else console.log(table(['ID', 'NAME', 'PROJECT', 'ROLE', 'CREATED', 'EXPIRES', 'REVOKED', 'LAST USED'], tokens.map((t) => [
        t.id, safeText(t.name) || '-', safeText(t.project), t.role, t.created_at, t.expires_at || 'never', t.revoked_at || '-', t.last_used_at || 'never',
      ])));
    } else {
      const t = await api.revokeToken(positionals[1]!);
      console.log(values.json ? JSON.stringify(t, null, 2) : `${t.id} revoked at ${t.revoked_at}`);
    }
    return 0;
  } finally {
    api.close();
  }
}

/** `trainyard agents join-token create` (args after "join-token"). */
export async function joinTokenCommand(args: string[], address: string): Promise<number> {
  const { values, positionals } = parse(args, { name: { type: 'string' }, expires: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if (values.help) { console.log(JOIN_TOKEN_HELP); return 0; }
  if (positionals[0] !== 'create' || positionals.length > 1) throw invalid('expected: trainyard agents join-token create [--expires 1h]; see --help');
  const expires = parseDuration(values.expires, 'expires');
  const api = await Api.connect(address);
  try {
    printCreated(await api.createJoinToken({ name: values.name ?? '', expires_in_seconds: expires }), values.json, 'join token');
    return 0;
  } finally {
    api.close();
  }
}
