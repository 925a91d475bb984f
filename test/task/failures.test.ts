import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ImageDir, MANIFEST_FILE, imageFileName } from '../../images/index.js';
import { startWorkload } from '../../test-containers/launch.js';
import { alive, dumpedCounter, lastTick, stasis, tmpDir } from '../helpers/stasis.js';

function freePid(): number {
  for (let pid = 30000; pid < 32000; pid++) if (!fs.existsSync(`/proc/${pid}`)) return pid;
  throw new Error('no free pid');
}

/** A stopped or traced task shows it in /proc/PID/status. */
function runningUntraced(pid: number): boolean {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return /TracerPid:\s+0\n/.test(s) && /State:\s+[SR]/.test(s);
}

test('dump of a PID that does not exist fails with one line', async (t) => {
  const pid = freePid();
  const r = await stasis(['dump', '-t', String(pid), '-D', tmpDir(t)]);
  t.is(r.exitCode, 1);
  t.is(r.stderr, `stasis: process ${pid} does not exist`);
});

test('unknown options and a missing PID are usage errors', async (t) => {
  const r1 = await stasis(['dump', '--no-such-option', '-D', tmpDir(t)]);
  t.is(r1.exitCode, 1);
  t.is(r1.stderr, 'stasis: unknown option --no-such-option');
  const r2 = await stasis(['dump', '-D', tmpDir(t)]);
  t.is(r2.stderr, 'stasis: the PID to dump is needed (--tree)');
});

test.serial('a dump that runs out of space leaves the target running, untraced, and no inventory', async (t) => {
  const mnt = tmpDir(t, 'stasis-small-');
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'stasis-test', mnt]);
  t.teardown(() => execa('umount', [mnt]).catch(() => {}));
  const work = tmpDir(t);
  const w = await startWorkload('state', [work]); // 64 MiB of heap: cannot fit in 1 MiB
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready/);
  const r = await stasis(['dump', '-t', String(w.pid), '-D', path.join(mnt, 'img')]);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /^stasis: .*ENOSPC/);
  t.is(r.stderr.split('\n').length, 1);
  t.true(alive(w.pid) && runningUntraced(w.pid), 'target running and released');
  t.false(fs.existsSync(path.join(mnt, 'img', 'inventory.img')));
  // The target is unharmed: it still checks out as it would have.
  fs.writeFileSync(path.join(work, 'check'), '');
  await w.waitForLine(/^result /, 20_000);
  t.deepEqual(w.lines.filter((l) => l.startsWith('FAIL')), []);
});

test('dump into a directory that cannot be created fails before touching the target', async (t) => {
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 1$/);
  const r = await stasis(['dump', '-t', String(w.pid), '-D', '/proc/stasis-cannot-be-here']);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /^stasis: cannot write images into \/proc\/stasis-cannot-be-here: E[A-Z]+$/);
  t.true(runningUntraced(w.pid));
  const at = lastTick(w.lines);
  await w.waitForLine(new RegExp(`^tick ${at + 2}$`));
});


test.serial('restore from an incomplete dump (no inventory.img) is refused', async (t) => {
  const { dir } = await dumpedCounter(t);
  fs.rmSync(path.join(dir, 'inventory.img'));
  const r = await stasis(['restore', '-d', '-D', dir]);
  t.is(r.exitCode, 1);
  t.is(r.stderr, `stasis: inventory.img: missing: ${dir} holds no complete dump`);
});

test.serial('restore from a truncated pages image fails before creating any process', async (t) => {
  const { dir, pid } = await dumpedCounter(t);
  fs.rmSync(path.join(dir, MANIFEST_FILE)); // as CRIU's dumps: the pagemap's check, not the manifest's
  const pages = path.join(dir, 'pages-1.img');
  fs.truncateSync(pages, fs.statSync(pages).size - 4096);
  const r = await stasis(['restore', '-d', '-D', dir]);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /^stasis: pages-1\.img: truncated \(\d+ of \d+ bytes\)$/);
  t.false(fs.existsSync(`/proc/${pid}`));
});

test.serial('restore from a corrupted core image names the file and offset', async (t) => {
  const { dir, pid } = await dumpedCounter(t);
  fs.rmSync(path.join(dir, MANIFEST_FILE)); // as CRIU's dumps: the decoder's check, not the manifest's
  const core = path.join(dir, imageFileName('CORE', pid));
  const bytes = fs.readFileSync(core);
  fs.writeFileSync(core, bytes.subarray(0, bytes.length - 100));
  const r = await stasis(['restore', '-d', '-D', dir]);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, new RegExp(`^stasis: core-${pid}\\.img: .*offset \\d+`));
  t.false(fs.existsSync(`/proc/${pid}`));
});

test.serial('a restore that fails half-way kills what it made: no process, no zombie', async (t) => {
  const { dir, pid, key } = await dumpedCounter(t);
  fs.rmSync(path.join(dir, MANIFEST_FILE)); // an image edited on purpose, as one of CRIU's could be
  // Point the task's exe at a file that is not there: found only after the address space is built.
  const images = await ImageDir.open(dir);
  const files = await images.messages('files.img');
  const mm = await images.message(imageFileName('MM', pid));
  const exe = files.find((f) => f.id === mm.exe_file_id)!;
  exe.reg.name = '/nonexistent/stasis-exe';
  delete exe.reg.size;
  await images.writeMessages('files.img', files);
  const r = await stasis(['restore', '-d', '-D', dir, '--inherit-fd', `fd[1]:${key}`]);
  t.is(r.exitCode, 1);
  t.is(r.stderr, `stasis: mm-${pid}.img: task ${pid}: mm fields: cannot reopen /nonexistent/stasis-exe in task ${pid}: no such file where the task looks (deleted, or outside its root or mount namespace)`);
  t.false(fs.existsSync(`/proc/${pid}`), 'the half-restored task is gone, reaped');
});

test.serial('a tree with an object stasis cannot dump deep inside fails in one line and keeps running, untraced', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('tcpchild', []);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 3$/);
  const tree = (pid: number): number[] => [pid, ...fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim().split(/\s+/).filter(Boolean).map(Number).flatMap(tree)];
  const pids = tree(w.pid);
  t.teardown(() => pids.forEach((p) => { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }));
  t.is(pids.length, 3);
  const r = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /^stasis: .*an established TCP connection is dumped only with --tcp-established \(or --tcp-close\)$/);
  t.is(r.stderr.split('\n').length, 1);
  for (const p of pids) t.true(runningUntraced(p), `process ${p} runs on, untraced`);
  t.false(fs.existsSync(path.join(dir, 'inventory.img')));
  const at = lastTick(w.lines);
  await w.waitForLine(new RegExp(`^tick ${at + 3}$`));
});
