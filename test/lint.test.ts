// ESLint as part of `npm test` (config: eslint.config.js): the whole project must have no problems, and
// the rules must really be on, which the probes check by linting code that breaks each one.
import t from 'tap';
import path from 'node:path';
import { ESLint } from 'eslint';
import { root } from './helpers/stack.js';

const eslint = new ESLint({ cwd: root });
const where = (r: ESLint.LintResult, m: { line: number; column: number }) => `${path.relative(root, r.filePath)}:${m.line}:${m.column}`;

t.test('the project has no lint problems', async (t) => {
  const started = Date.now();
  const results = await eslint.lintFiles(['.']);
  const problems = results.flatMap((r) => r.messages.map((m) => `${where(r, m)} ${m.ruleId ?? 'fatal'}: ${m.message}`));
  t.ok(results.some((r) => r.filePath.endsWith(path.join('scheduler', 'scheduler.ts'))), 'the daemons\' files are linted');
  t.ok(results.some((r) => r.filePath.endsWith(path.join('test', 'lint.test.ts'))), 'the tests are linted');
  t.same(problems, [], `eslint: ${problems.length} problem(s)`);
  t.comment(`linted ${results.length} files in ${Date.now() - started} ms`);
});

// The probes lint text that differs from the file on disk. With CI=true typescript-eslint infers a
// "single run" and builds its program from disk once, so typed rules would judge the disk file instead:
// the probes opt out of that inference (the whole-project lint above keeps it, it reads files as they are).
const prober = new ESLint({ cwd: root, overrideConfig: { languageOptions: { parserOptions: { disallowAutomaticSingleRunInference: true } } } });

/** Lints `code` as if it were the file at `rel` (a file in the typed program, so typed rules work). */
async function probe(rel: string, code: string): Promise<string[]> {
  const [r] = await prober.lintText(code, { filePath: path.join(root, rel) });
  return r!.messages.map((m) => `${m.line} ${m.ruleId ?? 'fatal'}`);
}

t.test('the rules catch what they are for', async (t) => {
  const daemon = await probe('scheduler/scheduler.ts', [
    "import { AgentDaemon } from '../agent/agent.js';",
    'async function work(): Promise<number> { return 1; }',
    'export function go(): void { work(); }',
    'export function each(): void { [1].forEach(async () => { await work(); }); }',
    'export const keep = AgentDaemon;',
  ].join('\n'));
  t.same(daemon, ['1 trainyard/boundaries', '3 @typescript-eslint/no-floating-promises', '4 @typescript-eslint/no-misused-promises'],
    'scheduler/: importing agent/, a floating promise, an async callback where void is expected');

  const agent = await probe('agent/agent.ts', "export { Scheduler } from '../scheduler/scheduler.js';");
  t.same(agent, ['1 trainyard/boundaries'], 'agent/ must not import scheduler/');

  const shared = await probe('shared/errors.ts', [
    "import type { Db } from '../scheduler/db/database.js';",
    "export const agent = () => import('../agent/agent.js');",
    'export type D = Db;',
  ].join('\n'));
  t.same(shared, ['1 trainyard/boundaries', '2 trainyard/boundaries'], 'shared/ imports neither daemon, not even a type or lazily');

  const cli = await probe('cli/commands/daemons.ts', [
    "import { Scheduler } from '../../scheduler/scheduler.js';",
    "import pg from 'pg';",
    "import type { Db } from '../../scheduler/db/database.js';",
    "export const agent = () => import('../../agent/agent.js');",
    'export const keep: [unknown, unknown, Db | null] = [Scheduler, pg, null];',
  ].join('\n'));
  t.same(cli, ['1 trainyard/boundaries', '2 trainyard/boundaries'], 'cli/: a static import of a daemon or pg is refused; a type or a lazy import is fine');

  const browser = await probe('console/api.ts', [
    "import { keys } from '../shared/storage.js';",
    "export function go(): void { fetch('/api/me'); }",
    'export const keep = keys;',
  ].join('\n'));
  t.same(browser, ['1 trainyard/boundaries', '2 @typescript-eslint/no-floating-promises'], 'console/ (browser code, its own tsconfig): no import of shared/ or a daemon, no floating promise');

  const test = await probe('test/lint.test.ts', "import t from 'tap';\nt.test('top-level subtests are fine', async () => {});\nPromise.resolve(1);");
  t.same(test, ['3 @typescript-eslint/no-floating-promises'], 'tap\'s t.test is allowed at top level; other floating promises are not');
});
