// ESLint for `npm test` (test/lint.test.ts runs it and fails on any problem). Two kinds of rules:
// promises that nobody awaits or catches (typed rules, so they see what returns a promise), and the
// folder boundaries that match the runtime boundaries: the scheduler and the agent are separate programs
// on separate machines and share only shared/; the CLI loads a daemon only when asked to start one.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import tseslint from 'typescript-eslint';

const root = path.dirname(fileURLToPath(import.meta.url));

/**
 * Which top-level folders each folder must not import (by relative path, resolved). `lazy` folders may be
 * imported only with a dynamic `import()` (or `import type`, which leaves nothing at run time); `packages`
 * are npm packages a folder must not import statically.
 */
export const boundaries = {
  scheduler: { never: ['agent', 'cli', 'test', 'bench'] },
  agent: { never: ['scheduler', 'cli', 'test', 'bench'] },
  shared: { never: ['scheduler', 'agent', 'cli', 'test', 'bench'] },
  cli: { never: ['test', 'bench'], lazy: ['scheduler', 'agent'], packages: ['pg', 'kysely', 'nats'] },
  // The web console runs in a browser: it talks to the scheduler over /api/ and shares no code with it.
  console: { never: ['scheduler', 'agent', 'shared', 'cli', 'test', 'bench'] },
};

/** The top-level folder of a file (relative to the project root), or null outside the project. */
function topFolder(file) {
  const rel = path.relative(root, file);
  if (rel.startsWith('..') || path.isAbsolute(rel)) return null;
  return rel.split(path.sep)[0] ?? null;
}

const boundaryRule = {
  meta: {
    type: 'problem',
    docs: { description: 'Keep scheduler/, agent/, shared/ and cli/ apart as their programs are (see boundaries).' },
    schema: [],
    messages: {
      never: '{{from}}/ must not import {{to}}/ ("{{spec}}"): {{why}}',
      lazy: 'cli/ may import {{to}}/ only lazily, with `await import("{{spec}}")`, so client verbs do not load the daemons',
      pkg: 'cli/ must not import "{{spec}}" statically: it is a daemon dependency; import it lazily in the daemon command',
    },
  },
  create(context) {
    const from = topFolder(context.filename);
    const rules = from ? boundaries[from] : undefined;
    if (!rules) return {};
    const why = {
      scheduler: 'the scheduler and the agent run on different machines; share code through shared/',
      agent: 'the agent and the scheduler run on different machines; share code through shared/',
      shared: 'shared/ is what both daemons and the CLI use, so it depends on none of them',
      cli: 'the program must not depend on tests or benchmarks',
      console: 'the console is browser code: it knows the scheduler only through its HTTP API',
    }[from];
    /** @param {import('estree').Node} node @param {string} spec @param {'static'|'dynamic'|'type'} kind */
    function check(node, spec, kind) {
      if (!spec.startsWith('.')) {
        const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        if (kind === 'static' && rules.packages?.includes(pkg)) context.report({ node, messageId: 'pkg', data: { spec } });
        return;
      }
      const to = topFolder(path.resolve(path.dirname(context.filename), spec));
      if (!to || to === from) return;
      if (rules.never.includes(to)) context.report({ node, messageId: 'never', data: { from, to, spec, why } });
      else if (kind === 'static' && rules.lazy?.includes(to)) context.report({ node, messageId: 'lazy', data: { to, spec } });
    }
    const literal = (n) => (n && n.type === 'Literal' && typeof n.value === 'string' ? n.value : null);
    const typeOnly = (n) => n.importKind === 'type' || n.exportKind === 'type'
      || (n.specifiers?.length > 0 && n.specifiers.every((s) => s.importKind === 'type' || s.exportKind === 'type'));
    const declaration = (n) => { const spec = literal(n.source); if (spec) check(n.source, spec, typeOnly(n) ? 'type' : 'static'); };
    return {
      ImportDeclaration: declaration,
      ExportNamedDeclaration: declaration,
      ExportAllDeclaration: declaration,
      ImportExpression(n) { const spec = literal(n.source); if (spec) check(n.source, spec, 'dynamic'); },
      TSImportType(n) {
        const arg = n.argument?.type === 'TSLiteralType' ? n.argument.literal : n.source ?? n.argument;
        const spec = literal(arg);
        if (spec) check(n, spec, 'type');
      },
    };
  },
};

export const trainyardPlugin = { meta: { name: 'trainyard' }, rules: { boundaries: boundaryRule } };

/** Typed linting with this tsconfig: the daemons, CLI and tests share one; the console (browser code) has its own. */
const typedBy = (project) => ({ languageOptions: { parser: tseslint.parser, parserOptions: { project, tsconfigRootDir: root } } });

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'shared/proto/gen/', '.tap/', 'coverage/', '.services/', '.demo/', '.test-output/'] },
  { files: ['**/*.ts'], ignores: ['console/**'], ...typedBy('./tsconfig.eslint.json') },
  // The web console: DOM types and Preact's JSX.
  { files: ['console/**/*.ts', 'console/**/*.tsx'], ...typedBy('./console/tsconfig.json') },
  {
    files: ['**/*.ts', 'console/**/*.tsx'],
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { '@typescript-eslint': tseslint.plugin, trainyard: trainyardPlugin },
    rules: {
      // tap queues subtests itself: `t.test(...)` at the top of a file is the documented form, not a
      // forgotten promise.
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', name: 'test', package: '@tapjs/test' }],
      }],
      '@typescript-eslint/no-misused-promises': 'error',
      'trainyard/boundaries': 'error',
      // Node 20 collects the timeout before it fires (shared/deadline.ts says how, and is the way instead).
      'no-restricted-syntax': ['error', {
        selector: "CallExpression[callee.object.name='AbortSignal'][callee.property.name='any'] CallExpression[callee.object.name='AbortSignal'][callee.property.name='timeout']",
        message: 'AbortSignal.any with AbortSignal.timeout never aborts once the timeout is garbage collected (Node 20): use deadline(ms, signal) from shared/deadline.ts',
      }],
    },
  },
);
