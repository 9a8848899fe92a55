// The web console's page: one HTML file, its script and its stylesheet, built into dist/console by
// `npm run build` (scripts/build-console.mjs) and read once when the routes are made. Every page is served
// with a strict Content-Security-Policy: scripts and styles only from this origin (no inline script, no
// CDN), images and embedded PDFs only from this origin or blob: (artifact previews), no framing.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ServerResponse } from 'node:http';
import { projectRoot } from '../../shared/proto.js';
import type { Routes } from './server.js';

export const CONSOLE_CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob:", "connect-src 'self'",
  "object-src blob:", "frame-src blob:", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
].join('; ');

export const securityHeaders = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
} as const;

const files = [
  ['/', 'index.html', 'text/html; charset=utf-8'],
  ['/assets/app.js', 'app.js', 'text/javascript; charset=utf-8'],
  ['/assets/app.css', 'app.css', 'text/css; charset=utf-8'],
  ['/assets/uplot.css', 'uplot.css', 'text/css; charset=utf-8'],
] as const;

export function consoleStaticRoutes(dir = path.join(projectRoot(), 'dist', 'console')): Routes {
  const routes: Record<string, Routes[string]> = {};
  for (const [route, file, type] of files) {
    let body: Buffer | null = null;
    try { body = readFileSync(path.join(dir, file)); } catch { body = null; }
    routes[`GET ${route}`] = async (_req, res: ServerResponse) => {
      if (!body) {
        res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`the console is not built (${path.join(dir, file)} is missing): run npm run build\n`);
        return;
      }
      res.writeHead(200, { ...securityHeaders, 'content-type': type, 'content-length': body.length, 'cache-control': 'no-cache' });
      res.end(body);
    };
  }
  return routes;
}
