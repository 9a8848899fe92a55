// Opens N follow streams (StreamLogs) on one run with one token, from a process of its own, so that a test
// can time another client's calls during the burst without this burst's own CPU time landing in them.
// Prints `{"refused": R, "other": O}` (JSON, one line) after each refusal (RESOURCE_EXHAUSTED) or other
// error, and holds the open streams until killed. Uses the built client (npm test builds first).
//   node test/helpers/stream-burst.mjs ADDRESS TOKEN RUN_ID N
import { Api } from '../../dist/cli/client.js';

const [address, token, runId, n] = process.argv.slice(2);
const apis = Array.from({ length: 5 }, () => new Api(address, { token }));
let refused = 0;
let other = 0;
for (let i = 0; i < Number(n); i++) {
  const st = apis[i % apis.length].client.StreamLogs({ run_id: runId, follow: true });
  st.on('data', () => {});
  st.on('error', (e) => {
    if (e.code === 8) refused++; else other++;
    console.log(JSON.stringify({ refused, other }));
  });
  if (i % 25 === 24) await new Promise((r) => setImmediate(r));
}
setInterval(() => {}, 1 << 30);
