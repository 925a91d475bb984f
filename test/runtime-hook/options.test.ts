// criu's options as callers pass them: every option criu 4.2 documents is known (supported,
// accepted without effect, or refused with a reason — never "unknown option"), the command lines
// test runners and runtimes build work end to end on a real workload, criu's configuration files
// are read as criu reads them, and `check --feature` answers as criu's would where stasis does
// what the feature stands for. Compared with the CRIU 4.2 binary in shared/anchors.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { cgroupHierarchyMount } from '../../cgroup/cgroups.js';
import { CHOICES, OPTIONS } from '../../runtime-hook/criu-options.js';
import { FEATURES } from '../../runtime-hook/features.js';
import { parseArgs } from '../../runtime-hook/options.js';
import { pipe } from '../../sys/native.js';
import { buildWorkload, descendants, startWorkload, underReaper, type Workload } from '../../test-containers/launch.js';
import { sharedDir } from '../helpers/paths.js';
import { alive, assertFdsKept, fdKey, killPid, lastTick, stasis, stasisBin, tmpDir, waitForFreePids } from '../helpers/stasis.js';

const criuBin = path.join(sharedDir, 'anchors/criu-4.2/criu');
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/** The long options criu 4.2's --help names. */
async function criuHelpOptions(): Promise<string[]> {
  const help = (await execa(criuBin, ['--help'], { reject: false, all: true })).all ?? '';
  return [...new Set([...help.matchAll(/(?:^|[\s|])--([a-z][a-z0-9-]+)/g)].map((m) => m[1]!))];
}

/** The feature names criu 4.2's --help lists under --feature. */
async function criuFeatureNames(): Promise<string[]> {
  const help = (await execa(criuBin, ['--help'], { reject: false, all: true })).all ?? '';
  const block = /--feature FEAT[^\n]*one of:\n((?: {20,}[^\n]*\n)+)/.exec(help)?.[1] ?? '';
  return block.split(/[\s,]+/).filter(Boolean);
}

/** A sample value criu would take for option `long`. */
function sampleValue(long: string): string {
  if (long === 'close') return '99'; // criu does close it
  return CHOICES[long]?.[0] ?? (['timeout', 'port', 'ps-socket', 'ghost-limit', 'status-fd'].includes(long) ? '1' : 'x');
}

test('every option criu 4.2\'s --help names is one stasis knows, with or without its value, never an unknown option', async (t) => {
  const names = await criuHelpOptions();
  t.true(names.length > 60, `criu --help lists its options (${names.length} found)`);
  for (const long of names.filter((n) => !n.endsWith('-'))) { // not "--no-" of the text about it
    if (long.startsWith('no-') && OPTIONS.find((o) => o.long === long.slice(3))?.negatable) {
      t.notThrows(() => parseArgs(['dump', `--${long}`], OPTIONS), `--${long} parses`);
      continue;
    }
    const spec = OPTIONS.find((o) => o.long === long);
    if (!spec) {
      t.fail(`--${long} (criu documents it) is unknown to stasis`);
      continue;
    }
    const words = spec.value ? [`--${long}`, sampleValue(long)] : spec.optionalValue && long !== 'verbosity' ? [`--${long}=${sampleValue(long)}`] : [`--${long}`];
    t.notThrows(() => parseArgs(['dump', ...words], OPTIONS), `--${long} parses`);
  }
});

test('every option stasis knows is one criu 4.2 takes (none invented), each yes/no one of criu\'s with its --no- form', async (t) => {
  for (const o of OPTIONS) {
    const arg = o.value ? [`--${o.long}`, sampleValue(o.long)] : [`--${o.long}`];
    if (['help', 'version', 'config'].includes(o.long)) continue; // they act before anything else
    const r = await execa(criuBin, ['--no-default-config', ...arg, 'no-such-action'], { reject: false, all: true });
    t.notRegex(r.all ?? '', /unrecognized option/, `criu knows --${o.long}`);
    if (o.negatable) {
      const n = await execa(criuBin, ['--no-default-config', `--no-${o.long}`, 'no-such-action'], { reject: false, all: true });
      t.notRegex(n.all ?? '', /unrecognized option/, `criu knows --no-${o.long}`);
      t.notThrows(() => parseArgs(['dump', `--no-${o.long}`], OPTIONS));
    }
  }
});

test('an optional value attaches only with =: --manage-cgroups --pidfile F keeps F as the pidfile; -v, -vN, -vvvv and --verbosity[=N] count as criu counts', (t) => {
  let p = parseArgs(['restore', '--manage-cgroups', '--pidfile', 'F', '-d'], OPTIONS);
  t.deepEqual(p.values.get('pidfile'), ['F']);
  t.deepEqual(p.values.get('manage-cgroups'), ['']);
  t.true(p.flags.has('restore-detached'));
  p = parseArgs(['restore', '--manage-cgroups=soft', '--pidfile=F'], OPTIONS);
  t.deepEqual(p.values.get('manage-cgroups'), ['soft']);
  t.deepEqual(p.values.get('pidfile'), ['F']);
  t.is(parseArgs(['dump'], OPTIONS).verbosity, 2);
  t.is(parseArgs(['dump', '-v'], OPTIONS).verbosity, 3);
  t.is(parseArgs(['dump', '-v4'], OPTIONS).verbosity, 4);
  t.is(parseArgs(['dump', '-vv'], OPTIONS).verbosity, 4);
  t.is(parseArgs(['dump', '--verbosity=1'], OPTIONS).verbosity, 1);
  t.is(parseArgs(['dump', '--verbosity'], OPTIONS).verbosity, 3);
  t.is(parseArgs(['dump', '-v0', '-vvvv'], OPTIONS).verbosity, 4);
  p = parseArgs(['restore', '-dS', '--display-stats', '--no-display-stats', '--daemon'], OPTIONS);
  t.true(p.flags.has('restore-detached') && p.flags.has('restore-sibling'));
  t.false(p.flags.has('display-stats'));
  t.throws(() => parseArgs(['dump', '--no-such-thing'], OPTIONS), { message: 'unknown option --no-such-thing' });
});

test('options stasis refuses fail with one line saying why, and criu\'s other actions too; bad values are one line; options without effect are said in the log', async (t) => {
  const dir = tmpDir(t);
  for (const args of [
    ['dump', '-t', '1', '-D', dir, '--lazy-pages'], ['restore', '-D', dir, '--stream'], ['dump', '-t', '1', '-D', dir, '--page-server'],
    ['restore', '-D', dir, '--pre-dump-mode', 'mmap'], ['restore', '-D', dir, '--manage-cgroups=loose'], ['restore', '-D', dir, '--restore-sibling'],
    ['dump', '-t', '1', '-D', dir, '--timeout', 'soon'], ['dump', '-t', '1', '-D', dir, '--status-fd', '987'],
    ['pre-dump', '-t', '1', '-D', dir], ['page-server', '-D', dir], ['lazy-pages', '-D', dir], ['dedup', '-D', dir],
  ]) {
    const r = await stasis(args);
    t.is(r.exitCode, 1, args.join(' '));
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.regex(r.stderr, /^stasis: \S.*(not supported: \S|not one of|only makes sense|whole number|no such open descriptor)/, args.join(' '));
    t.notRegex(r.stderr, /unknown/);
  }
  // Without effect, and said so in the log.
  const log = path.join(dir, 'check.log');
  const r = await stasis(['check', '--feature', 'timens', '-o', log, '-v4', '--evasive-devices', '--weak-sysctls', '--manage-cgroups=full']);
  t.is(r.exitCode, 0, r.all);
  const text = fs.readFileSync(log, 'utf8');
  for (const o of ['evasive-devices', 'weak-sysctls', 'manage-cgroups']) t.regex(text, new RegExp(`--${o}: accepted, no effect here: \\S`));
});

/**
 * A counter (workloads/counter.c) dumped with the command line a test runner builds, its status
 * descriptor a pipe of ours. Returns the images directory, its stdout pipe's key, its PID and
 * the last tick it printed.
 */
async function runnerDump(t: ExecutionContext): Promise<{ dir: string; key: string; pid: number; last: number }> {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3$/);
  const key = fdKey(w.pid, 1);
  const dumpPidfile = path.join(dir, 'dump.pid');
  const d = await stasis(['dump', '-o', 'dump.log', '-D', dir, '-v4', '--tree', String(w.pid), '--pidfile', dumpPidfile, '--timeout', '10',
    '--no-default-config', '--verbosity=4', '--pre-dump-mode', 'splice', '--status-fd', '3'], { extraPipes: 1 });
  t.is(d.exitCode, 0, d.all);
  t.is((d.stdio as unknown[])[3], '\0', 'the status descriptor got a zero byte, and was closed');
  t.true(fs.existsSync(path.join(dir, 'dump.log')), 'dump.log is in the images directory');
  t.false(fs.existsSync(dumpPidfile), 'a dump writes no pidfile (nor does criu\'s)');
  await w.exitOf(w.pid);
  await w.finished;
  return { dir, key, pid: w.pid, last: lastTick(w.lines) };
}

/**
 * `restore -o restore.log -D DIR -v4 ARGS --inherit-fd fd[1]:KEY --status-fd 3` under a reaper,
 * `args` given the pidfile's path. Asserts the restore succeeded, the pidfile names the restored
 * root (the dumped PID), the status descriptor got its zero byte, the descriptors are as dumped,
 * and the counter goes on from the tick after its last.
 */
async function runnerRestore(t: ExecutionContext, dumped: { dir: string; key: string; pid: number; last: number },
  args: (pidfile: string) => string[], opts: { underShell?: boolean } = {}): Promise<{ r: Workload; parentOnRestore?: number }> {
  const pidfile = path.join(tmpDir(t, 'stasis-pidfile-'), 'restored.pid');
  await waitForFreePids([dumped.pid]);
  const [sr, sw] = pipe(O_NONBLOCK | O_CLOEXEC);
  let r: Workload;
  try {
    const argv = [process.execPath, stasisBin, 'restore', '-o', 'restore.log', '-D', dumped.dir, '-v4', ...args(pidfile),
      '--inherit-fd', `fd[1]:${dumped.key}`, '--status-fd', '3'];
    // underShell: stasis's parent is a shell that stays a while after it, and is no subreaper.
    r = await underReaper(opts.underShell ? ['/bin/sh', '-c', '"$@" && sleep 2', 'sh', ...argv] : argv, undefined, [sw]);
  } finally {
    fs.closeSync(sw);
  }
  t.teardown(async () => {
    killPid(dumped.pid);
    await r.kill();
  });
  let parentOnRestore: number | undefined;
  if (opts.underShell) {
    for (let i = 0; i < 1500 && !fs.existsSync(pidfile); i++) await new Promise((res) => setTimeout(res, 20));
    parentOnRestore = Number(/^PPid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${dumped.pid}/status`, 'utf8'))?.[1]);
  }
  try {
    t.is(await r.exitOf(r.pid, 30_000), `exit ${r.pid} 0`, `${r.lines.join(' | ')} ${fs.existsSync(path.join(dumped.dir, 'restore.log')) ? fs.readFileSync(path.join(dumped.dir, 'restore.log'), 'utf8').split('\n').filter((l) => /Error/.test(l)).join(' | ') : ''}`);
    const b = Buffer.alloc(4);
    t.is(fs.readSync(sr, b), 1, 'the status descriptor got one byte');
    t.is(b[0], 0, '... a zero byte');
  } finally {
    fs.closeSync(sr);
  }
  t.is(fs.readFileSync(pidfile, 'utf8'), String(dumped.pid), 'the pidfile names the restored root');
  t.true(alive(dumped.pid));
  t.true(fs.existsSync(path.join(dumped.dir, 'restore.log')), 'restore.log is in the images directory');
  await assertFdsKept(t, dumped.dir, dumped.pid);
  const first = Number((await r.waitForLine(/^tick \d+$/)).split(' ')[1]);
  t.is(first, dumped.last + 1, 'the counter goes on from the tick after its last');
  return { r, parentOnRestore };
}

test.serial('a test runner\'s dump and restore -d command lines work on a counter: pidfile written, status descriptor told, the counter goes on', async (t) => {
  const dumped = await runnerDump(t);
  await runnerRestore(t, dumped, (pidfile) => ['--pidfile', pidfile, '--restore-detached']);
});

test.serial('restore --restore-detached --restore-sibling: the restored root is a child of stasis\'s parent, and goes on; without it, it is not', async (t) => {
  for (const sibling of [true, false]) {
    const dumped = await runnerDump(t);
    const { r, parentOnRestore } = await runnerRestore(t, dumped,
      (pidfile) => ['--pidfile', pidfile, '--restore-detached', ...(sibling ? ['--restore-sibling'] : [])], { underShell: true });
    if (sibling) t.is(parentOnRestore, r.pid, 'its parent is the shell that ran stasis');
    else t.not(parentOnRestore, r.pid, 'without --restore-sibling, its parent is not the shell that ran stasis');
  }
});

test.serial('restore --manage-cgroups --pidfile F --cgroup-root pids:/CG: the bare --manage-cgroups leaves --pidfile alone, F is written, the counter goes on in CG', async (t) => {
  const dumped = await runnerDump(t);
  // A cgroup of the test's, removed once the restored counter is gone.
  const hierarchy = cgroupHierarchyMount('pids');
  if (!hierarchy) throw new Error('no v1 pids cgroup hierarchy on this machine');
  const cgName = `stasis-opts-${process.pid}-cg`;
  const cgDir = path.join(hierarchy, cgName);
  fs.mkdirSync(cgDir);
  t.teardown(async () => {
    for (let i = 0; i < 100 && fs.existsSync(cgDir); i++) {
      try {
        fs.rmdirSync(cgDir);
      } catch {
        await new Promise((res) => setTimeout(res, 20)); // the killed counter is still leaving it
      }
    }
  });
  await runnerRestore(t, dumped, (pidfile) => ['--manage-cgroups', '--pidfile', pidfile, '--restore-detached', '--cgroup-root', `pids:/${cgName}`, '--manage-cgroups']);
  t.regex(fs.readFileSync(`/proc/${dumped.pid}/cgroup`, 'utf8'), new RegExp(`:pids:/${cgName}$`, 'm'), 'in the cgroup --cgroup-root names');
});

test.serial('dump --timeout bounds the wait for a task that cannot stop (a vfork parent): one line, within the timeout, the tree let go', async (t) => {
  buildWorkload('vfork-wait');
  const w = await startWorkload('vfork-wait', ['30']);
  t.teardown(async () => {
    for (const p of descendants(w.pid)) killPid(p);
    await w.kill();
  });
  await w.waitForLine(/^ready /);
  while (!descendants(w.pid).length) await new Promise((r) => setTimeout(r, 20));
  const dir = tmpDir(t);
  const t0 = performance.now();
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--timeout', '1']);
  const took = performance.now() - t0;
  t.is(d.exitCode, 1, d.all);
  t.is(d.stderr.trim().split('\n').length, 1, d.stderr);
  t.regex(d.stderr, new RegExp(`not collected within the 1 s timeout: task ${w.pid} did not stop`));
  t.true(took < 4000, `gave up after ${Math.round(took)} ms (stasis's own wait is 5 s)`);
  t.true(alive(w.pid), 'the tree was let go');
  t.is(Number(/^TracerPid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${w.pid}/status`, 'utf8'))?.[1]), 0, 'untraced');
});

test.serial('criu\'s configuration files: CRIU_CONFIG_FILE\'s settings take effect (even with --no-default-config, as criu); ~/.criu/default.conf\'s too, skipped under --no-default-config and --config', async (t) => {
  const dir = tmpDir(t);
  // Read as criu reads: a # word ends a line, "quoted words" stay whole, VALUE after a blank or =.
  const logDir = path.join(dir, 'with space');
  fs.mkdirSync(logDir);
  const envFile = path.join(dir, 'env.conf');
  fs.writeFileSync(envFile, `# a comment\n  log-file "${logDir}/cfg.log"  # the log\nverbosity=4\nleave-running\n`);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 1$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', path.join(dir, 'img'), '--no-default-config'], { env: { ...process.env, CRIU_CONFIG_FILE: envFile } });
  t.is(d.exitCode, 0, d.all);
  t.true(alive(w.pid), 'leave-running from CRIU_CONFIG_FILE: the tree runs on after the dump');
  const at = lastTick(w.lines);
  await w.waitForLine(new RegExp(`^tick ${at + 2}$`));
  t.regex(fs.readFileSync(path.join(logDir, 'cfg.log'), 'utf8'), new RegExp(`Read the configuration file ${envFile}`), 'log-file from the file, with its blank');

  // $HOME/.criu/default.conf: an option stasis refuses shows that it was read.
  const home = path.join(dir, 'home');
  fs.mkdirSync(path.join(home, '.criu'), { recursive: true });
  fs.writeFileSync(path.join(home, '.criu/default.conf'), 'lazy-pages\n');
  const env = { ...process.env, HOME: home, CRIU_CONFIG_FILE: '' };
  const read = await stasis(['check', '--feature', 'timens'], { env });
  t.is(read.exitCode, 1);
  t.regex(read.stderr, /^stasis: --lazy-pages is not supported/);
  for (const skip of [['--no-default-config'], ['--config', path.join(dir, 'none.conf')]]) {
    const r = await stasis(['check', '--feature', 'timens', ...skip], { env });
    t.is(r.exitCode, 0, `${skip.join(' ')}: ${r.all}`);
  }
  // An option criu does not know, in a file: one line naming the file.
  fs.writeFileSync(path.join(dir, 'bad.conf'), 'display-stats\nno-such-option 3\n');
  const bad = await stasis(['check', '--config', path.join(dir, 'bad.conf')]);
  t.is(bad.exitCode, 1);
  t.is(bad.stderr.trim(), `stasis: ${path.join(dir, 'bad.conf')}: unknown option --no-such-option`);
});

test.serial('check --feature NAME answers every feature name criu 4.2 knows in one line, exit 0 or 1; as criu\'s own check where stasis does what the feature stands for, and never yes where criu says no', async (t) => {
  const names = await criuFeatureNames();
  t.true(names.length >= 40, `criu --help lists its features (${names.length})`);
  t.deepEqual([...names].sort(), Object.keys(FEATURES).sort(), 'stasis knows exactly criu 4.2\'s feature names');
  for (const name of names) {
    const s = await stasis(['check', '--feature', name]);
    const c = await execa(criuBin, ['check', '--no-default-config', '--feature', name], { reject: false, all: true });
    t.true(s.exitCode === 0 || s.exitCode === 1, `${name}: ${s.all}`);
    t.is((s.exitCode === 0 ? s.stdout : s.stderr).trim().split('\n').length, 1, `${name}: one line`);
    if (s.exitCode === 0) {
      t.is(s.stdout, `${name} is supported`);
      t.is(c.exitCode, 0, `${name}: stasis says yes, so does criu`);
    } else {
      t.regex(s.stderr, new RegExp(`^stasis: ${name} is not supported: \\S`));
    }
    if (!FEATURES[name]!.notInStasis) t.is(s.exitCode, c.exitCode === 0 ? 0 : 1, `${name}: as criu answers on this machine (${s.all})`);
  }
  const bad = await stasis(['check', '--feature', 'warp_drive']);
  t.is(bad.exitCode, 1);
  t.regex(bad.stderr, /^stasis: unknown feature 'warp_drive'/);
});
