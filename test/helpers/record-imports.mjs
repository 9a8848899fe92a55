// Module hooks that write every module URL the program resolves to the file named by
// TRAINYARD_RECORD_IMPORTS, one a line. Used by test/e2e/cli-imports.test.ts to see which packages a CLI
// verb loads: for ESM there is no require cache to inspect afterwards, and the resolve hook also sees a
// CommonJS package (pg, nats) at the point an ES module imports it. Hooks run on their own thread, so the
// list goes through a file rather than memory. Register with:
//   node --import 'data:text/javascript,import{register}from"node:module";register("<this file URL>")' ...
import { appendFileSync } from 'node:fs';

const out = process.env.TRAINYARD_RECORD_IMPORTS;

export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (out) appendFileSync(out, `${result.url}\n`);
  return result;
}
