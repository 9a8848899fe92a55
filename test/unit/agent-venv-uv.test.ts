// Which requirements the agent installs itself, wheels only, through the shared uv cache (agent/venv-uv.ts):
// only packages of an index by name; anything naming a file, a folder, an editable or another
// requirements file is built as the run's uid, apart from the cache.
import t from 'tap';
import { sharedCacheEligible } from '../../agent/venv-uv.js';

t.test('index requirements by name go through the shared cache', async (t) => {
  for (const text of [
    '',
    'pandas==2.2.3\nscikit-learn==1.5.2\n',
    '# pins\nnumpy>=1.26,<2 ; python_version >= "3.10"\nrequests[socks]~=2.31\n',
    '--index-url https://pypi.org/simple\n--extra-index-url https://example.com/simple\ntorch\n',
    '--no-index\n-f https://example.com/wheels/\nsix\n',
    `six==1.16.0 --hash=sha256:${'a'.repeat(64)}\n`,
  ]) t.ok(sharedCacheEligible(text), JSON.stringify(text));
});

t.test('anything that names a local path, a file URL, an editable or a nested file does not', async (t) => {
  for (const text of [
    '-e .\n', '.\n', './x-0.1-py3-none-any.whl\n', '--find-links wheels\nx\n', '--find-links ./wheels\nx\n',
    '-r other.txt\n', '-c pins.txt\nx\n', 'x @ file:///tmp/x.whl\n', 'x @ https://example.com/x-0.1-py3-none-any.whl\n',
    '/abs/x-0.1-py3-none-any.whl\n', '--index-url /srv/simple\nx\n', '--no-binary :all:\nx\n', 'git+https://example.com/x.git\n',
  ]) t.notOk(sharedCacheEligible(text), JSON.stringify(text));
});
