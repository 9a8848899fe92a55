// Certificates for TLS tests, made by openssl in a temporary folder: a private CA, another CA (for "trusts
// the wrong CA"), a server certificate for 127.0.0.1 and localhost (SAN) and a client certificate, both
// signed by the first CA. Used by tls.test.ts (gRPC) and nats-transport.test.ts (NATS).
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tempDir } from './stack.js';

export interface Pki { dir: string; ca: string; otherCa: string; cert: string; key: string; clientCert: string; clientKey: string }

export function makePki(): Pki {
  const dir = tempDir('ty-pki-');
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'other-ca']) {
    ssl('req', '-x509', ...ec, '-keyout', f(`${ca}.key`), '-out', f(`${ca}.pem`), '-days', '2', '-subj', `/CN=trainyard test ${ca}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  }
  const issue = (name: string, ext: string) => {
    writeFileSync(f(`${name}.ext`), ext);
    ssl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`);
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '2', '-extfile', f(`${name}.ext`));
  };
  issue('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  issue('client', 'extendedKeyUsage=clientAuth\n');
  return { dir, ca: f('ca.pem'), otherCa: f('other-ca.pem'), cert: f('server.pem'), key: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}
