// The scheduler's cap on one log line's length (scheduler/runs/logs.ts): whatever an agent sends, a line
// is stored with at most MAX_LOG_LINE_CHARS of its text, and a cut line says how much was cut.
import t from 'tap';
import { capLogLine, MAX_LOG_LINE_CHARS } from '../../scheduler/runs/logs.js';

t.test('lines up to the cap are kept as they are', async (t) => {
  t.equal(capLogLine(''), '');
  const atCap = 'a'.repeat(MAX_LOG_LINE_CHARS);
  t.equal(capLogLine(atCap), atCap);
});

t.test('a longer line is cut and says so', async (t) => {
  const cut = capLogLine('b'.repeat(MAX_LOG_LINE_CHARS + 1000));
  t.ok(cut.startsWith('b'.repeat(MAX_LOG_LINE_CHARS)));
  t.equal(cut.slice(MAX_LOG_LINE_CHARS), ' [trainyard: line cut, 1000 more characters]');
  t.ok(capLogLine('c'.repeat(10 * 1024 * 1024)).length < MAX_LOG_LINE_CHARS + 100, 'ten megabytes become one capped line');
});

t.test('a cut never splits a surrogate pair', async (t) => {
  const text = 'd'.repeat(MAX_LOG_LINE_CHARS - 1) + '😀' + 'e'.repeat(10);
  const cut = capLogLine(text);
  t.notOk(/[\ud800-\udbff](?![\udc00-\udfff])/.test(cut), 'no lone high surrogate');
  t.match(cut, /^d+ \[trainyard: line cut, 12 more characters\]$/);
});
