// The CLI's TLS flags (--tls-ca, --tls-client-cert, --tls-client-key), pulled out of the arguments wherever
// they stand, like --scheduler, and handed to shared/tls.ts, which every client channel dials with.
import { clientTlsSettings, compileSettings } from '../shared/settings.js';
import { useClientTls } from '../shared/tls.js';

export function takeTlsFlags(args: string[]): string[] {
  const flags: Record<string, string> = {};
  const names = new Set<string>(Object.values(clientTlsSettings).map((s) => s.flag));
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf('=');
    const name = a.startsWith('--') ? (eq > 0 ? a.slice(2, eq) : a.slice(2)) : '';
    if (!names.has(name)) { rest.push(a); continue; }
    flags[name] = eq > 0 ? a.slice(eq + 1) : (args[++i] ?? '');
  }
  useClientTls(compileSettings(clientTlsSettings, flags));
  return rest;
}
