#!/usr/bin/env node
// The one program: daemons (`scheduler`, `agent`) and client verbs. Built by `npm run build` into dist/.
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err?.stack ?? String(err)); process.exitCode = 1; },
);
