import t from 'tap';
t.ok(true, 'top-level one');
t.test('group', async (t) => {
  t.equal(1, 1, 'nested one');
  await t.test('deeper', async (t) => { t.pass('deep one'); });
});
