// Where a webhook may post: no SSRF into the scheduler's box or its network. A URL is http(s) and every
// address its host resolves to is public, unless the admin allowed that host or address
// (--webhook-allow-hosts). Checked at create, and again at each delivery (DNS can change): the delivery
// then connects to the very address that was checked, so a name cannot resolve to a public address for
// the check and to a private one for the connection (DNS rebinding).
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { invalid } from '../../shared/errors.js';

/** Address ranges a webhook may not reach unless allowed: the box itself, link-local (cloud metadata), private networks. */
const refused: readonly [string, number, 'ipv4' | 'ipv6', string][] = [
  ['0.0.0.0', 8, 'ipv4', 'this network'],
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['169.254.0.0', 16, 'ipv4', 'link-local (cloud metadata)'],
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'shared (carrier-grade NAT)'],
  ['::', 128, 'ipv6', 'unspecified'],
  ['::1', 128, 'ipv6', 'loopback'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['fc00::', 7, 'ipv6', 'private (unique local)'],
];

/** Why `address` may not be reached ('' when it may). IPv4-mapped IPv6 (::ffff:7f00:1) is judged as its IPv4 (BlockList does so). */
export function refusedRange(address: string): string {
  const family = net.isIPv4(address) ? 'ipv4' : 'ipv6';
  for (const [base, bits, f, why] of refused) {
    const list = new net.BlockList();
    list.addSubnet(base, bits, f);
    if (list.check(address, family)) return why;
  }
  return '';
}

/** The admin's exceptions (--webhook-allow-hosts): host names, addresses and CIDRs. */
export class AllowList {
  readonly #names = new Set<string>();
  readonly #addresses = new net.BlockList();

  constructor(setting: string) {
    for (const raw of setting.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
      const [ip, bits] = raw.split('/');
      if (ip && net.isIP(ip)) {
        const family = net.isIPv4(ip) ? 'ipv4' : 'ipv6';
        if (bits === undefined) this.#addresses.addAddress(ip, family);
        else if (/^\d+$/.test(bits)) this.#addresses.addSubnet(ip, Number(bits), family);
        else throw invalid(`--webhook-allow-hosts: "${raw}" is not a host, an address or a CIDR`);
      } else {
        this.#names.add(raw);
      }
    }
  }

  allowsName(host: string): boolean { return this.#names.has(host.toLowerCase()); }
  allowsAddress(address: string): boolean { return this.#addresses.check(address, net.isIPv4(address) ? 'ipv4' : 'ipv6'); }
}

export interface CheckedTarget { url: URL; address: string; family: 4 | 6 }

/** The URL's shape: http or https, a host, no credentials in it. Throws INVALID_ARGUMENT saying what is wrong. */
export function parseWebhookUrl(text: string): URL {
  if (!URL.canParse(text)) throw invalid(`--url "${text}" is not a URL`);
  const url = new URL(text);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`--url "${text}": only http and https URLs may be webhooks, not ${url.protocol}`);
  if (url.username || url.password) throw invalid(`--url "${text}": put no credentials in the URL (the body is signed with the hook's secret)`);
  if (!url.hostname) throw invalid(`--url "${text}" names no host`);
  return url;
}

/**
 * Resolves the URL's host and checks every address it has; the first one is where to connect. Throws
 * INVALID_ARGUMENT naming the address and its range when one is refused, or when the host does not resolve.
 */
export async function checkTarget(url: URL, allow: AllowList): Promise<CheckedTarget> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: { address: string; family: number }[];
  if (net.isIP(host)) addresses = [{ address: host, family: net.isIPv4(host) ? 4 : 6 }];
  else {
    try {
      addresses = await lookup(host, { all: true, verbatim: true });
    } catch (err) {
      throw invalid(`webhook host "${host}" does not resolve (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  const nameAllowed = allow.allowsName(host);
  for (const a of addresses) {
    const why = refusedRange(a.address);
    if (why && !nameAllowed && !allow.allowsAddress(a.address)) {
      throw invalid(`webhook host "${host}" is ${a.address}, a ${why} address: refused (an admin may allow it with the scheduler's --webhook-allow-hosts)`);
    }
  }
  const first = addresses[0];
  if (!first) throw invalid(`webhook host "${host}" has no address`);
  return { url, address: first.address, family: first.family === 6 ? 6 : 4 };
}
