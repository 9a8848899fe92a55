import t from 'tap';
t.pass('before crash');
setTimeout(() => process.exit(3), 50);
