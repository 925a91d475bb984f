// Each kind of open file survives dump and restore: a C workload (fdkinds) sets the state up,
// is dumped and restored, and checks every item itself.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { startWorkload } from '../../test-containers/launch.js';
import { alive, selfCheckRoundTrip, stasis, tmpDir } from '../helpers/stasis.js';

/** Dump the workload in `mode`, restore it, let it check itself; returns the images dir. */
async function roundTrip(t: ExecutionContext, mode: string, dumpArgs: string[] = []): Promise<string> {
  const { dir, r } = await selfCheckRoundTrip(t, 'fdkinds', { args: (work) => [mode, work], dumpArgs });
  t.deepEqual(r.lines.filter((l) => l.startsWith('left')), []);
  return dir;
}

/** Every image of a dump decodes with Debian's crit, and `stasis show` prints what crit prints. */
async function critDecodes(t: ExecutionContext, dir: string, expect: string[]): Promise<void> {
  const imgs = fs.readdirSync(dir).filter((f) => f.endsWith('.img') && !f.startsWith('pages-'));
  for (const f of expect) t.true(imgs.includes(f), `${f} written (have ${imgs.join(' ')})`);
  for (const f of imgs) {
    const r = await execa('crit', ['decode', '--pretty', '-i', path.join(dir, f)], { reject: false });
    t.is(r.exitCode, 0, `${f}: ${r.stderr}`);
    if (f === 'files.img' || expect.includes(f)) {
      const ours = JSON.parse((await stasis(['show', path.join(dir, f)])).stdout);
      // Debian's crit predates memfd_inode_entry.mode (CRIU 4.1), which stasis writes as CRIU 4.2 does.
      if (f === 'memfd.img') for (const e of ours.entries) delete e.mode;
      t.deepEqual(ours, JSON.parse(r.stdout), `${f}: stasis show prints what crit prints`);
    }
  }
}

test.serial('restored eventfds keep their counters (incl. above 32 bits), semaphore mode and O_NONBLOCK', async (t) => {
  await roundTrip(t, 'eventfd');
});

test.serial('a restored signalfd keeps its mask and returns the signal that was pending', async (t) => {
  await roundTrip(t, 'signalfd');
});

test.serial('restored timerfds keep firing at their period, keep unread expirations and an absolute deadline', async (t) => {
  await roundTrip(t, 'timerfd');
});

test.serial('a restored epoll set reports the same ready events with the same data', async (t) => {
  await roundTrip(t, 'epoll');
});

test.serial('restored inotify watches keep their wd numbers and report events, with no stray events', async (t) => {
  const dir = await roundTrip(t, 'inotify');
  await critDecodes(t, dir, ['files.img']);
  const show = await stasis(['show', path.join(dir, 'files.img')]);
  t.regex(show.stdout, /"wd": 3/);
  t.regex(show.stdout, /"path": "[^"]*\/w\/c"/);
});

test.serial('a restored memfd keeps its name, contents, size, seals, offsets and shared inode', async (t) => {
  const dir = await roundTrip(t, 'memfd');
  await critDecodes(t, dir, ['memfd.img']);
});

test.serial('a restored FIFO holds exactly its unread bytes, with each end\'s flags', async (t) => {
  const dir = await roundTrip(t, 'fifo');
  await critDecodes(t, dir, ['fifo-data.img']);
});

test.serial('a deleted-but-open file comes back with its contents and offset, and is still unlinked', async (t) => {
  const dir = await roundTrip(t, 'ghost');
  await critDecodes(t, dir, ['remap-fpath.img', 'ghost-file-1.img']);
  const crit = await execa('crit', ['decode', '-i', path.join(dir, 'remap-fpath.img')]);
  t.regex(crit.stdout, /"remap_type": "GHOST"/);
});

test.serial('a deleted file above 1 MiB makes the dump fail with a clear error and leaves the process running', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-ghost-big-');
  const w = await startWorkload('fdkinds', ['ghost-big', work]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready \d+$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 1);
  t.regex(d.stderr, /^stasis: fd \d+ of task \d+ is the deleted file .*\/big of 2097152 bytes; stasis keeps deleted files up to 1048576 bytes/);
  t.is(d.stderr.split('\n').length, 1);
  t.true(alive(w.pid));
  t.false(fs.existsSync(path.join(dir, 'inventory.img')));
});

test.serial('a held flock, POSIX and OFD lock make the dump fail without --file-locks, with a one-line error', async (t) => {
  const dir = tmpDir(t);
  const work = tmpDir(t, 'stasis-locks-');
  const w = await startWorkload('fdkinds', ['locks', work]);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready \d+$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 1);
  t.regex(d.stderr, /^stasis: task \d+ holds a FLOCK WRITE lock on .*\/lf \(fd \d+\); dump with --file-locks to save it$/);
  t.true(alive(w.pid));
});

test.serial('with --file-locks, flock, POSIX and OFD locks are still held after restore', async (t) => {
  const dir = await roundTrip(t, 'locks', ['--file-locks']);
  await critDecodes(t, dir, ['filelocks.img']);
  const crit = await execa('crit', ['decode', '-i', path.join(dir, 'filelocks.img')]);
  t.is((JSON.parse(crit.stdout).entries as unknown[]).length, 3);
});

test.serial('images of eventfd, signalfd, timerfd and epoll dumps decode with crit and show their fields', async (t) => {
  for (const mode of ['eventfd', 'signalfd', 'timerfd', 'epoll']) {
    const dir = tmpDir(t);
    const work = tmpDir(t, `stasis-${mode}-`);
    const w = await startWorkload('fdkinds', [mode, work]);
    t.teardown(() => w.kill());
    await w.waitForLine(/^ready \d+$/);
    t.is((await stasis(['dump', '-t', String(w.pid), '-D', dir, '--leave-running'])).exitCode, 0);
    await critDecodes(t, dir, ['files.img']);
    const crit = await execa('crit', ['decode', '--pretty', '-i', path.join(dir, 'files.img')]);
    const ours = await stasis(['show', path.join(dir, 'files.img')]);
    t.deepEqual(JSON.parse(ours.stdout), JSON.parse(crit.stdout), `${mode}: stasis show prints what crit prints`);
    const field = { eventfd: 'counter', signalfd: 'sigmask', timerfd: 'settime_flags', epoll: 'tfd' }[mode]!;
    t.regex(crit.stdout, new RegExp(`"${field}"`), mode);
    await w.kill();
  }
});
