import t from 'tap';
t.test('fails', async (t) => { t.equal(1, 2, 'one is two'); t.pass('fine'); });
