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

// Node 20 reads every certificate NODE_EXTRA_CA_CERTS names before any script runs (70 ms for a
// system bundle); bin/stasis, started as runc and Podman start it (by its path), drops it.
test('bin/stasis started by its path does not load the certificates NODE_EXTRA_CA_CERTS names', async (t) => {
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: '/nonexistent/extra-ca.pem' };
  const direct = await execa(process.execPath, ['-e', '0'], { env, reject: false });
  t.regex(direct.stderr, /extra certs/, 'node itself tries to load them');
  const v = await execa(path.join(repoRoot, 'bin', 'stasis'), ['--version'], { env, reject: false });
  t.is(v.exitCode, 0, v.stderr);
  t.regex(v.stdout, /^Version: /);
  t.notRegex(v.stderr, /extra certs/);
});
