// The probes: /healthz says the process is alive (200 while it serves HTTP at all); /readyz says whether
// it is ready (200) or not (503), with a JSON body naming each check and what failed.
import { sendJson, type Routes } from './server.js';
import type { Readiness } from '../readiness.js';

export function healthRoutes(ready: () => Promise<Readiness>): Routes {
  return {
    'GET /healthz': async (_req, res) => sendJson(res, 200, { status: 'alive' }),
    'GET /readyz': async (_req, res) => {
      const r = await ready();
      sendJson(res, r.ready ? 200 : 503, r);
    },
  };
}
