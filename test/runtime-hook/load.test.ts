import test from 'ava';
import path from 'node:path';
import { execa } from 'execa';
import { repoRoot } from '../helpers/paths.js';
import { stasis } from '../helpers/stasis.js';

// bin/stasis loads the one-file build through its code cache (scripts/bundle.mjs, bin/load.cjs):
// a cache V8 turned down would cost every command its compile time again, without a word.
test('bin/stasis runs the one-file build, and V8 takes the code cache made with it', async (t) => {
  const r = await execa(process.execPath, ['-e', `
    const load = require(${JSON.stringify(path.join(repoRoot, 'bin', 'load.cjs'))});
    load.loadStasis().then((m) => console.log(JSON.stringify({ ...load.loaded, main: typeof m.main, dump: typeof m.dump })));
  `]);
  const loaded = JSON.parse(r.stdout);
  t.deepEqual(loaded, {
    file: path.join(repoRoot, 'dist', 'bundle', 'stasis.cjs'), cache: 'used', main: 'function', dump: 'function',
  });
  const v = await stasis(['--version']);
  t.is(v.exitCode, 0);
  t.regex(v.stdout, /^Version: /);
});
