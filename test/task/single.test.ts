import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { startWorkload, underReaper } from '../../test-containers/launch.js';
import {
  alive, assertFdsKept, fdKey, lastTick, restoreUnderReaper, selfCheckRoundTrip, stasis, stasisBin, tmpDir,
} from '../helpers/stasis.js';
import { repoRoot } from '../helpers/paths.js';
import { SYS } from '../../sys/arch.js';

test.serial('a restored counter continues from where it stopped, with the same PID and no error', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3$/);
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  t.regex(await w.exitOf(w.pid), /^signal \d+ 9$/, 'the dumped process was killed');
  await w.finished; // every line it printed relayed (the reaper reports the kill as soon as it reaps)
  const stoppedAt = lastTick(w.lines);

  const r = await restoreUnderReaper(t, dir, key, w.pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  await r.waitForLine(new RegExp(`^tick ${stoppedAt + 1}$`));
  await r.waitForLine(new RegExp(`^tick ${stoppedAt + 5}$`));
  t.true(alive(w.pid), 'running under its old PID');
  t.deepEqual(r.lines.filter((l) => l.startsWith('ERR')), []);
  t.is(r.lines.filter((l) => l.startsWith('tick')).map((l) => Number(l.slice(5)))[0], stoppedAt + 1,
    'the first tick after restore is the next one');
});

test.serial('a C process restores its 64 MiB heap, signal state, shared file offset, private mapping, cwd, umask, rlimit, credentials, personality, OOM score and THP setting', async (t) => {
  await selfCheckRoundTrip(t, 'state');
});

test.serial('a python3 interpreter is restored and goes on counting', async (t) => {
  const script = 'import time,sys\nn=0\nwhile True:\n    n+=1\n    print("tick", n, flush=True)\n    time.sleep(0.02)\n';
  await tickerRoundTrip(t, ['/usr/bin/python3', '-c', script]);
});

// The dump makes its calls in a task end in a breakpoint (SIGTRAP) it intercepts; a task that
// ignores SIGTRAP is asked the slower way, since the kernel would reset an ignored signal it forces.
for (const mode of ['ignores', 'catches'] as const) {
  test.serial(`a process that ${mode} SIGTRAP keeps that action through a --leave-running dump and a dump and restore, and never sees stasis's breakpoints`, async (t) => {
    const set = mode === 'ignores' ? 'signal.signal(signal.SIGTRAP, signal.SIG_IGN)'
      : 'signal.signal(signal.SIGTRAP, lambda s, f: hits.append(s))';
    // Every tick compares the kernel's view (SigIgn/SigCgt bit of SIGTRAP) with the one at start.
    const script = [
      'import signal, time', 'hits = []', set,
      'def trap():', '    st = open("/proc/self/status").read().splitlines()',
      '    return [int(l.split()[1], 16) >> 4 & 1 for l in st if l.startswith(("SigIgn:", "SigCgt:"))]',
      'want = trap()', 'n = 0', 'while True:', '    n += 1',
      '    if hits or trap() != want: print("ERR", hits, trap(), want, flush=True)',
      '    print("tick", n, flush=True)', '    time.sleep(0.02)', '',
    ].join('\n');
    const r = await tickerRoundTrip(t, ['/usr/bin/python3', '-c', script], async (w) => {
      const d = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t), '--leave-running']);
      t.is(d.exitCode, 0, d.all);
      await w.waitForLine(new RegExp(`^tick ${lastTick(w.lines) + 5}$`));
      t.deepEqual(w.lines.filter((l) => l.startsWith('ERR')), [], 'left running as it was');
    });
    t.deepEqual(r.lines.filter((l) => l.startsWith('ERR')), [], 'restored as it was');
  });
}

// Under memory-deny-write-execute (PR_SET_MDWE) the dump's writable and executable page is
// refused: it asks the task its questions one call at a time from plain scratch memory instead.
test.serial('a process under memory-deny-write-execute is dumped with --leave-running and runs on as it was', async (t) => {
  const script = [
    'import ctypes, time', 'libc = ctypes.CDLL(None)',
    'PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1',
    'if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0): print("ERR set", flush=True)',
    'n = 0', 'while True:', '    n += 1',
    '    print("tick", n, "mdwe", libc.prctl(PR_GET_MDWE, 0, 0, 0, 0), flush=True)', '    time.sleep(0.02)', '',
  ].join('\n');
  const w = await underReaper(['/usr/bin/python3', '-c', script]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3 /);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t), '--leave-running']);
  t.is(d.exitCode, 0, d.all);
  const at = lastTick(w.lines);
  await w.waitForLine(new RegExp(`^tick ${at + 5} `));
  t.deepEqual(w.lines.filter((l) => l.startsWith('ERR')), []);
  t.deepEqual(w.lines.filter((l) => l.startsWith('tick') && !l.endsWith(' mdwe 1')), [], 'MDWE on throughout');
});

test.serial('dump → restore → dump → restore keeps the counter going', async (t) => {
  const w = await startWorkload('counter', ['clock', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 2$/);
  let key = fdKey(w.pid, 1);
  let lines = w.lines;
  let at = 0;
  for (let round = 1; round <= 2; round++) {
    const dir = tmpDir(t);
    const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
    t.is(d.exitCode, 0, `round ${round}: ${d.all}`);
    at = Math.max(at, lastTick(lines));
    const r = await restoreUnderReaper(t, dir, key, w.pid);
    t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
    await r.waitForLine(new RegExp(`^tick ${at + 3}$`));
    key = fdKey(w.pid, 1);
    lines = r.lines;
    t.deepEqual(r.lines.filter((l) => l.startsWith('ERR')), []);
  }
});

test.serial('--leave-running leaves the original running and unharmed; restoring over it fails cleanly', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 2$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--leave-running']);
  t.is(d.exitCode, 0, d.all);
  const at = lastTick(w.lines);
  await w.waitForLine(new RegExp(`^tick ${at + 5}$`));
  t.true(alive(w.pid));
  const status = fs.readFileSync(`/proc/${w.pid}/status`, 'utf8');
  t.regex(status, /TracerPid:\s+0\n/, 'not traced');
  t.regex(status, /State:\s+[SR]/, 'not stopped');
  t.deepEqual(w.lines.filter((l) => l.startsWith('ERR')), []);
  // The PID is taken by the original: restoring now must fail cleanly.
  const r = await stasis(['restore', '-d', '-D', dir]);
  t.is(r.exitCode, 1);
  t.is(r.stderr, `stasis: pstree.img: PID ${w.pid} is already in use`);
});

test.serial('every image stasis writes decodes with Debian\'s crit', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 1$/);
  t.is((await stasis(['dump', '-t', String(w.pid), '-D', dir, '--leave-running'])).exitCode, 0);
  const imgs = fs.readdirSync(dir).filter((f) => f.endsWith('.img') && !f.startsWith('pages-'));
  t.true(imgs.length >= 9, imgs.join(' '));
  for (const f of [...imgs, 'stats-dump']) {
    const r = await execa('crit', ['decode', '-i', path.join(dir, f)], { reject: false });
    t.is(r.exitCode, 0, `${f}: ${r.stderr}`);
  }
});

test.serial('without -d stasis stays the parent of the restored process and exits with its status; --pidfile names it', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 2$/);
  const key = fdKey(w.pid, 1);
  t.is((await stasis(['dump', '-t', String(w.pid), '-D', dir])).exitCode, 0);
  await w.exitOf(w.pid);
  const pidfile = path.join(dir, 'restored.pid');
  const r = await underReaper([process.execPath, stasisBin, 'restore', '-D', dir, '--pidfile', pidfile,
    '--inherit-fd', `fd[1]:${key}`]);
  t.teardown(async () => {
    try { process.kill(w.pid, 'SIGKILL'); } catch { /* gone */ }
    await r.kill();
  });
  const at = lastTick(w.lines);
  await r.waitForLine(new RegExp(`^tick ${at + 2}$`));
  await assertFdsKept(t, dir, w.pid);
  t.is(fs.readFileSync(pidfile, 'utf8'), String(w.pid));
  t.is(Number(/PPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${w.pid}/status`, 'utf8'))![1]), r.pid, 'stasis is the parent');
  process.kill(w.pid, 'SIGTERM');
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 143`, 'stasis exits with 128 + SIGTERM, as criu does');
});

test.serial('a Node.js process (libuv threads, epoll, eventfds, pipes) is restored and its timer goes on', async (t) => {
  await tickerRoundTrip(t, [process.execPath, '-e', "let n = 0; setInterval(() => console.log('tick', ++n), 20)"],
    (w) => { t.true(fs.readdirSync(`/proc/${w.pid}/task`).length > 1, 'node runs several threads'); });
});

/**
 * A program that prints "tick N" lines: dumped once it has ticked 5 times (and `beforeDump` has
 * looked at it), restored, and the first tick after restore must be the next one, then ten more
 * must come. Returns the restored program.
 */
async function tickerRoundTrip(t: ExecutionContext, argv: string[],
  beforeDump?: (w: Awaited<ReturnType<typeof underReaper>>) => void | Promise<void>) {
  const dir = tmpDir(t);
  const w = await underReaper(argv);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 5$/);
  await beforeDump?.(w);
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  await w.finished; // every line it printed relayed (the reaper reports the kill as soon as it reaps)
  const at = lastTick(w.lines);
  const r = await restoreUnderReaper(t, dir, key, w.pid);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  await r.waitForLine(new RegExp(`^tick ${at + 10}$`));
  t.is(r.lines.find((l) => l.startsWith('tick')), `tick ${at + 1}`);
  t.true(alive(w.pid), 'running under its old PID');
  return r;
}

test.serial('limits are read from /proc/PID/limits where prlimit64 on the task is refused', async (t) => {
  // A task of another user, read by a stasis without CAP_SYS_RESOURCE: prlimit64 says EPERM.
  const w = await underReaper(['/usr/bin/prlimit', '--nofile=77:88', '--', '/usr/bin/setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '60']);
  t.teardown(() => w.kill());
  for (let i = 0; i < 200 && !fs.readFileSync(`/proc/${w.pid}/status`, 'utf8').includes('Uid:\t65534\t'); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const dist = path.join(repoRoot, 'dist');
  const script = `
    import { dumpRlimits } from '${dist}/task/rlimits.js';
    import { rawSyscall, nativeBuffer, addressOf } from '${dist}/sys/native.js';
    const refused = rawSyscall(${SYS.prlimit64}, ${w.pid}, 7, 0, addressOf(nativeBuffer(16))) === -1n;
    const nofile = dumpRlimits(${w.pid}).rlimits[7];
    console.log(JSON.stringify({ refused, cur: String(nofile.cur), max: String(nofile.max) }));`;
  const r = await execa('setpriv', ['--bounding-set', '-sys_resource', '--inh-caps', '-sys_resource', process.execPath,
    '--input-type=module', '-e', script], { reject: false, all: true });
  t.is(r.exitCode, 0, r.all);
  t.deepEqual(JSON.parse(r.stdout), { refused: true, cur: '77', max: '88' });
});
