// `trainyard tokens create|list|revoke` and `trainyard agents join-token create` (admin only: the
// scheduler refuses anyone else). A new token is printed once; lists never hold a secret.
import { withApi } from '../client.js';
import { jsonFlag } from '../args.js';
import { flags, group, verb, type Parsed } from '../verb.js';
import { color, safeText, table } from '../format.js';
import { invalid } from '../../shared/errors.js';
import type { CreatedToken__Output } from '../../shared/proto.js';

const ROLES = `The token (tyt_<id>_<secret>) is printed once; the scheduler keeps only its hash.
Roles: admin (the fleet and every project), member (its project's packages, datasets and runs),
reader (reads its project's). --expires takes a number and a unit: 30s, 15m, 12h, 30d.`;

const JOIN_DETAILS = `Start an agent with --join-token TOKEN (or TRAINYARD_JOIN_TOKEN). At its first Register the agent
exchanges it for its own credential, kept in its work dir (identity, mode 0600), and drops the token from
its environment. A join token joins --uses agents (default 1; 0: any number) until it expires or is revoked
(trainyard tokens revoke ID); a used-up token is refused like a revoked one.`;

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

const createFlags = flags({
  project: { type: 'string', value: 'P', required: true, description: 'the project the token acts in' },
  role: { type: 'string', value: 'member|reader|admin', required: true, description: 'what the token may do' },
  name: { type: 'string', value: 'N', description: 'a name to recognise it by in tokens list' },
  expires: { type: 'string', value: 'DURATION', default: 'never', description: 'lifetime: 30s, 15m, 12h, 30d' },
  json: jsonFlag,
});

async function create({ values }: Parsed<typeof createFlags>, address: string): Promise<number> {
  const role = values.role ?? '';
  if (!['member', 'reader', 'admin'].includes(role)) throw invalid(`--role: expected member, reader or admin, got "${role}"`);
  const expires = parseDuration(values.expires, 'expires');
  return withApi(address, async (api) => {
    printCreated(await api.createToken({ project: values.project ?? '', role, name: values.name ?? '', expires_in_seconds: expires }), values.json, 'token');
    return 0;
  });
}

async function list({ values }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  return withApi(address, async (api) => {
    const { tokens } = await api.listTokens();
    if (values.json) console.log(JSON.stringify(tokens, null, 2));
    else console.log(table(['ID', 'NAME', 'PROJECT', 'ROLE', 'CREATED', 'EXPIRES', 'REVOKED', 'LAST USED', 'USES LEFT'], tokens.map((t) => [
      t.id, safeText(t.name) || '-', safeText(t.project), t.role, t.created_at, t.expires_at || 'never', t.revoked_at || '-', t.last_used_at || 'never',
      t.role !== 'join' ? '-' : t.uses_left < 0 ? 'any' : String(t.uses_left),
    ])));
    return 0;
  });
}

async function revoke({ values, positionals }: Parsed<{ json: typeof jsonFlag }>, address: string): Promise<number> {
  const id = positionals[0];
  if (!id) throw invalid('tokens revoke: give the token id (trainyard tokens list shows them)');
  return withApi(address, async (api) => {
    const t = await api.revokeToken(id);
    console.log(values.json ? JSON.stringify(t, null, 2) : `${t.id} revoked at ${t.revoked_at}`);
    return 0;
  });
}

const joinFlags = flags({
  name: { type: 'string', value: 'N', description: 'a name to recognise it by in tokens list' },
  expires: { type: 'string', value: 'DURATION', default: '1h', description: 'lifetime: 30s, 15m, 12h, 30d' },
  uses: { type: 'string', value: 'N', default: '1', description: 'how many agents may join with it (0: any number until it expires)' },
  json: jsonFlag,
});

/** `trainyard agents join-token create`. */
async function createJoinToken({ values }: Parsed<typeof joinFlags>, address: string): Promise<number> {
  const expires = parseDuration(values.expires, 'expires');
  const uses = Number(values.uses ?? '1');
  if (!/^\d+$/.test(values.uses ?? '1') || uses > 100_000) throw invalid(`--uses: expected how many agents may join with it, 0 (any number) to 100000; got "${values.uses ?? ''}"`);
  return withApi(address, async (api) => {
    printCreated(await api.createJoinToken({ name: values.name ?? '', expires_in_seconds: expires, uses }), values.json, 'join token');
    return 0;
  });
}

export const tokensVerbs = [
  group({ path: ['tokens'], section: 'Tokens (admin)', summary: 'client tokens (admin only)' }),
  verb({
    path: ['tokens', 'create'], summary: 'make a client token, printed once (admin only)',
    flags: createFlags, run: create, details: ROLES,
    examples: ['trainyard tokens create --project vision --role member --name ci --expires 30d'],
  }),
  verb({ path: ['tokens', 'list'], summary: 'id, name, project, role, created, expires, revoked, last use; never a secret (admin only)', flags: { json: jsonFlag }, run: list, examples: ['trainyard tokens list'] }),
  verb({
    path: ['tokens', 'revoke'], summary: 'refuse a token from its next call on (admin only)',
    args: [{ name: 'ID', description: 'the token id (trainyard tokens list shows them)' }], flags: { json: jsonFlag }, run: revoke,
    examples: ['trainyard tokens revoke 4f2k9xq7m1ab'],
  }),
  group({ path: ['agents', 'join-token'], summary: 'join tokens for new agents (admin only)' }),
  verb({
    path: ['agents', 'join-token', 'create'], summary: 'make a join token for TRAINYARD_JOIN_TOKEN on a new agent, printed once (admin only)',
    flags: joinFlags, run: createJoinToken, details: JOIN_DETAILS,
    examples: ['trainyard agents join-token create --expires 1h --name rack-3', 'trainyard agents join-token create --uses 4 --name rack-3'],
  }),
];
