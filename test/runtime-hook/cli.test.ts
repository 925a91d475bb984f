import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { OPTIONS } from '../../runtime-hook/cli.js';
import { repoRoot } from '../helpers/paths.js';
import { stasis, tmpDir } from '../helpers/stasis.js';

const ACTIONS = ['dump', 'restore', 'check', 'show', 'swrk', 'demo'];

test('stasis --help, -h and help exit 0 and list every action, each option of dump and restore on a line of its own', async (t) => {
  for (const args of [['--help'], ['-h'], ['help']]) {
    const r = await stasis(args);
    t.is(r.exitCode, 0, `${args}: ${r.stderr}`);
    t.is(r.stderr, '');
    for (const a of ACTIONS) t.regex(r.stdout, new RegExp(`^  ${a}\\b`, 'm'), `${args} lists ${a}`);
    // Every option the command line accepts is described: its long name begins a line.
    for (const o of OPTIONS) t.regex(r.stdout, new RegExp(`^ +(-\\w, )?--${o.long}\\b`, 'm'), `${args} describes --${o.long}`);
  }
});

test('stasis dump --help shows dump\'s options only, and so does stasis help dump; an unknown action is one line and exit 1', async (t) => {
  for (const args of [['dump', '--help'], ['help', 'dump'], ['dump', '-h']]) {
    const r = await stasis(args);
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stdout, /^usage: stasis dump -t PID -D DIR/);
    t.regex(r.stdout, /^ +-R, --leave-running +\S/m);
    t.regex(r.stdout, /^ +-t, --tree PID +\S/m);
    t.notRegex(r.stdout, /--restore-detached/, 'restore\'s options are not dump\'s');
  }
  const show = await stasis(['show', '--help']);
  t.is(show.exitCode, 0);
  t.regex(show.stdout, /^usage: stasis show FILE \| -D DIR/);
  const bad = await stasis(['frobnicate', '--help']);
  t.is(bad.exitCode, 1);
  t.is(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  t.regex(bad.stderr, /unknown action 'frobnicate'/);
  const none = await stasis([]);
  t.is(none.exitCode, 1);
  t.is(none.stderr.trim().split('\n').length, 1, none.stderr);
});

test('stasis --version keeps criu\'s Version line first (runtimes parse it) and adds stasis\'s own version', async (t) => {
  const r = await stasis(['--version']);
  t.is(r.exitCode, 0);
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
  t.deepEqual(r.stdout.split('\n'), ['Version: 4.2', `stasis: ${pkg.version}`]);
  t.is((await stasis(['-V'])).stdout, r.stdout);
});

test('stasis show -D on a directory that holds no dump fails with one line naming it', async (t) => {
  const dir = tmpDir(t);
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'not an image\n');
  const r = await stasis(['show', '-D', dir]);
  t.is(r.exitCode, 1);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`${dir}: not a dump`));
  t.is(r.stdout, '');
});
