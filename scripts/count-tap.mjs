#!/usr/bin/env node
// Runs a command that writes TAP (here `tap --reporter=tap`), shows its output unchanged as it comes, and
// ends with one plain line `N passed, N failed`, which is the line CI reads. With no command it reads TAP
// from stdin instead:
//
//   node scripts/count-tap.mjs node_modules/.bin/tap --reporter=tap test/a.test.ts
//   node scripts/count-tap.mjs < results.tap
//
// What is counted: individual assertions (the leaves of the subtest tree), not the summary test point
// each subtest and each test file ends with, which would count every failure twice. A subtest whose own
// point is `not ok` although nothing inside it failed (a file that crashed or timed out, a missing plan)
// counts as one failure, and so does a failing exit status with no failed assertion. Skipped and todo
// points are counted in neither number; a note line before the last one says how many there were.
import { spawn } from 'node:child_process';
import { Parser } from 'tap-parser';

/** @typedef {{ passed: number, failed: number, skipped: number, todo: number }} Tally */

/** @returns {Tally} */
const emptyTally = () => ({ passed: 0, failed: 0, skipped: 0, todo: 0 });

/** @param {Tally} into @param {Tally} from */
function add(into, from) {
  into.passed += from.passed;
  into.failed += from.failed;
  into.skipped += from.skipped;
  into.todo += from.todo;
}

/**
 * Tallies one parser's stream, following its subtests. tap-parser announces a subtest with 'child'
 * before any of its lines, and the subtest's summary point is the parent's next 'assert'.
 * @param {Parser} parser
 * @returns {Tally} filled in as the stream is parsed; final once the parser completes
 */
function tally(parser) {
  const total = emptyTally();
  /** @type {Tally | null} */
  let subtest = null;
  parser.on('child', (child) => {
    subtest = tally(child);
  });
  parser.on('assert', (point) => {
    const sub = subtest;
    subtest = null;
    if (sub) {
      add(total, sub);
      const empty = sub.passed + sub.failed + sub.skipped + sub.todo === 0;
      if (!point.ok && !point.todo && sub.failed === 0) total.failed++;
      else if (empty && point.skip) total.skipped++;
      return;
    }
    if (point.todo) total.todo++;
    else if (point.skip) total.skipped++;
    else if (point.ok) total.passed++;
    else total.failed++;
  });
  parser.on('complete', (results) => {
    // A subtest whose summary point never came (a truncated stream).
    if (subtest) add(total, subtest);
    subtest = null;
    // Bail out, missing or wrong plan: the stream is not ok even if no assertion said so.
    if (!results.ok && total.failed === 0) total.failed++;
  });
  return total;
}

const parser = new Parser();
const total = tally(parser);
let endsWithNewline = true;
let finished = false;

/** @param {Buffer} chunk */
function pass(chunk) {
  process.stdout.write(chunk);
  if (chunk.length > 0) endsWithNewline = chunk[chunk.length - 1] === 0x0a;
  parser.write(chunk);
}

/** @param {number | null} exitCode */
function finish(exitCode) {
  if (finished) return; // a failed spawn reports both 'error' and 'close'
  finished = true;
  parser.end();
  if (exitCode !== 0 && total.failed === 0) total.failed = 1;
  const out = [];
  if (!endsWithNewline) out.push('');
  if (total.skipped + total.todo > 0) {
    out.push(`# ${total.skipped} skipped, ${total.todo} todo (counted in neither number below)`);
  }
  out.push(`${total.passed} passed, ${total.failed} failed`, '');
  process.stdout.write(out.join('\n'));
  process.exitCode = total.failed > 0 ? 1 : 0;
}

const [command, ...args] = process.argv.slice(2);
if (command === undefined) {
  process.stdin.on('data', pass);
  process.stdin.on('end', () => finish(0));
} else {
  const child = spawn(command, args, { stdio: ['inherit', 'pipe', 'inherit'] });
  // Pass signals on, then still print the count for whatever ran.
  for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
    process.on(signal, () => child.kill(signal));
  }
  child.stdout.on('data', pass);
  child.on('error', (err) => {
    process.stderr.write(`count-tap: cannot run ${command}: ${err.message}\n`);
    finish(127);
  });
  // 'close', not 'exit': all of the child's output has been read by then.
  child.on('close', (code, signal) => finish(signal ? 128 : code));
}
