import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { startWorkload, underReaper } from '../../test-containers/launch.js';
import { fdKey, killPid, stasis, stasisBin, tmpDir } from '../helpers/stasis.js';

/** `stasis ARGS` run with umask 0, where the kernel leaves every mode bit asked for. */
function stasisUmask0(args: string[]) {
  return execa('sh', ['-c', 'umask 0 && exec "$0" "$@"', process.execPath, stasisBin, ...args], { reject: false, all: true });
}

const mode = (file: string) => fs.lstatSync(file).mode & 0o7777;

/** Every entry of `dir` whose mode is not `want`, as "name 0644". */
function modesOtherThan(dir: string, want: number): string[] {
  return fs.readdirSync(dir).filter((n) => mode(path.join(dir, n)) !== want).map((n) => `${n} 0${mode(path.join(dir, n)).toString(8)}`);
}

test.serial('under umask 0 a dump creates its missing images directory 0700 and every file 0600 (images, pages, log, stats), and so does the restore', async (t) => {
  const top = tmpDir(t);
  const dir = path.join(top, 'new', 'images');
  // 16 MiB: the pages file is created by stasis and written by the task (the large-dump path).
  const w = await startWorkload('bigmem', ['16']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^ready /);
  const key = fdKey(w.pid, 1);
  const d = await stasisUmask0(['dump', '-t', String(w.pid), '-D', dir, '-o', 'dump.log']);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  t.is(mode(path.join(top, 'new')), 0o700);
  t.is(mode(dir), 0o700);
  const names = fs.readdirSync(dir);
  for (const f of ['inventory.img', `core-${w.pid}.img`, 'pages-1.img', 'dump.log', 'stats-dump']) t.true(names.includes(f), f);
  t.true(fs.statSync(path.join(dir, 'pages-1.img')).size >= 16 << 20);
  t.deepEqual(modesOtherThan(dir, 0o600), []);

  const r = await underReaper(['/bin/sh', '-c', 'umask 0 && exec "$0" "$@"', process.execPath, stasisBin,
    'restore', '-d', '-D', dir, '-o', 'restore.log', '--inherit-fd', `fd[1]:${key}`]);
  t.teardown(async () => {
    killPid(w.pid);
    await r.kill();
  });
  t.is(await r.exitOf(r.pid, 30_000), `exit ${r.pid} 0`, r.lines.join('\n'));
  t.true(fs.existsSync(path.join(dir, 'restore.log')));
  t.true(fs.existsSync(path.join(dir, 'stats-restore')));
  t.deepEqual(modesOtherThan(dir, 0o600), []);
});

test.serial('a dump never writes through a symbolic link or into a file that was there: links and hard links planted at image names leave their targets as they were', async (t) => {
  const dir = tmpDir(t);
  const outside = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 2$/);
  const planted: Record<string, string> = {};
  for (const name of [`core-${w.pid}.img`, `pagemap-${w.pid}.img`, 'pages-1.img', 'inventory.img', 'stats-dump']) {
    const target = path.join(outside, `${name}.target`);
    fs.writeFileSync(target, `not ${name}\n`);
    fs.symlinkSync(target, path.join(dir, name));
    planted[target] = `not ${name}\n`;
  }
  // A hard link: the same inode, which writing the file "in place" would change.
  const hard = path.join(outside, 'mm.target');
  fs.writeFileSync(hard, 'not an mm image\n');
  fs.linkSync(hard, path.join(dir, `mm-${w.pid}.img`));
  planted[hard] = 'not an mm image\n';

  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--leave-running']);
  t.is(d.exitCode, 0, d.all);
  for (const [target, text] of Object.entries(planted)) t.is(fs.readFileSync(target, 'utf8'), text, `${target} untouched`);
  for (const name of [`core-${w.pid}.img`, `pagemap-${w.pid}.img`, `mm-${w.pid}.img`, 'inventory.img', 'stats-dump']) {
    const st = fs.lstatSync(path.join(dir, name));
    t.true(st.isFile(), `${name} is a file of its own`);
    t.is(st.nlink, 1, `${name} has one link`);
    t.is(st.mode & 0o777, 0o600);
  }
  const show = await stasis(['show', '-D', dir]);
  t.is(show.exitCode, 0, show.stderr);
  t.regex(show.stdout, /complete dump/);
});

test.serial('a log name that is another user\'s symbolic link is refused with one line, its target untouched', async (t) => {
  const dir = tmpDir(t);
  const target = path.join(tmpDir(t), 'target');
  fs.writeFileSync(target, 'precious\n');
  const link = path.join(dir, 'dump.log');
  fs.symlinkSync(target, link);
  fs.lchownSync(link, 65534, 65534);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 1$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '-o', 'dump.log', '--leave-running']);
  t.is(d.exitCode, 1);
  t.is(d.stderr.split('\n').length, 1, d.stderr);
  t.regex(d.stderr, /dump\.log: a symbolic link of user 65534: refusing/);
  t.is(fs.readFileSync(target, 'utf8'), 'precious\n');
  // /dev/null, root's, is written to as it is.
  const n = await stasis(['dump', '-t', String(w.pid), '-D', dir, '-o', '/dev/null', '--leave-running']);
  t.is(n.exitCode, 0, n.all);
  t.true(fs.statSync('/dev/null').isCharacterDevice());
});

test.serial('a restore whose image is a FIFO, or a link to a device, exits 1 at once with one line naming the file', async (t) => {
  const dir = tmpDir(t);
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 1$/);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);

  const core = path.join(dir, `core-${w.pid}.img`);
  fs.rmSync(core);
  execFileSync('mkfifo', ['-m', '0600', core]);
  const t0 = Date.now();
  const r = await execa(process.execPath, [stasisBin, 'restore', '-D', dir], { reject: false, timeout: 20_000 });
  t.false(r.timedOut, 'it did not wait on the FIFO');
  t.true(Date.now() - t0 < 10_000);
  t.is(r.exitCode, 1);
  t.is(r.stderr.split('\n').length, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`${core}: a FIFO, not a regular file`));
  const show = await execa(process.execPath, [stasisBin, 'show', core], { reject: false, timeout: 20_000 });
  t.false(show.timedOut);
  t.is(show.exitCode, 1);
  t.regex(show.stderr, /a FIFO, not a regular file/);

  fs.rmSync(core);
  fs.symlinkSync('/dev/zero', path.join(dir, 'pages-1.img.tmp'));
  fs.renameSync(path.join(dir, 'pages-1.img.tmp'), path.join(dir, 'pages-1.img'));
  const z = await execa(process.execPath, [stasisBin, 'restore', '-D', dir], { reject: false, timeout: 20_000 });
  t.is(z.exitCode, 1);
  t.regex(z.stderr, /pages-1\.img: a character device, not a regular file/);
});
