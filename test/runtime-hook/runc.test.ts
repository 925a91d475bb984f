import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { MANIFEST_FILE } from '../../images/index.js';
import { RuncContainer } from '../../test-containers/runc.js';
import { LeftoverHierarchy } from '../../test-containers/cgroup-leftover.js';
import { underReaper } from '../../test-containers/launch.js';
import { repoRoot } from '../helpers/paths.js';
import { alive, lastTick, stasisBin, tmpDir } from '../helpers/stasis.js';

const consoleSocketPy = path.join(repoRoot, 'test-containers', 'console-socket.py');

/** A busybox container under real runc, destroyed (by id) when the test ends. */
async function started(t: import('ava').ExecutionContext) {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  return { dir, c, out };
}

/** The Error lines of a criu-style log, for failure messages. */
function logErrors(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter((l) => /Error/.test(l)).join(' | ');
  } catch {
    return `(no ${path.basename(file)})`;
  }
}

/**
 * `runc checkpoint` into DIR/img{tag} (the container's output `out` then ends), then `runc
 * restore` from there; both must succeed. The last tick before the checkpoint, and the restore.
 */
async function checkpointAndRestore(t: import('ava').ExecutionContext, c: RuncContainer, dir: string,
  out: { closed: Promise<unknown>; lines: string[] }, tag = '') {
  const ck = c.checkpoint(stasisBin, path.join(dir, `img${tag}`), path.join(dir, `work${tag}`));
  t.is(ck.code, 0, `${ck.stderr} ${logErrors(path.join(dir, `work${tag}`, 'dump.log'))}`);
  await out.closed;
  const at = lastTick(out.lines);
  const rst = await c.restore(stasisBin, path.join(dir, `img${tag}`), path.join(dir, `rwork${tag}`));
  t.is(rst.code, 0, `${rst.out.lines.join(' | ')} ${logErrors(path.join(dir, `rwork${tag}`, 'restore.log'))}`);
  return { at, rst };
}

/** Let the lines written while the test ran runc synchronously be read. */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 300));
}

function ticks(lines: readonly string[]): number[] {
  return lines.filter((l) => /^tick \d+$/.test(l)).map((l) => Number(l.split(' ')[1]));
}

test.serial('runc --criu stasis: a busybox container is checkpointed and restored twice, its counter going on each time', async (t) => {
  const { dir, c, out } = await started(t);
  let outNow = out;
  for (const round of [1, 2]) {
    const img = path.join(dir, `img${round}`);
    const work = path.join(dir, `work${round}`);
    const ck = c.checkpoint(stasisBin, img, work);
    t.is(ck.code, 0, `checkpoint ${round}: ${ck.stderr} ${logErrors(path.join(work, 'dump.log'))}`);
    t.is(c.state(), undefined, 'the checkpointed container is gone');
    await outNow.closed;
    const at = lastTick(outNow.lines);
    t.true(fs.existsSync(path.join(img, 'inventory.img')));
    t.true(fs.existsSync(path.join(work, 'dump.log')));

    const rst = await c.restore(stasisBin, img, path.join(dir, `rwork${round}`));
    t.is(rst.code, 0, `restore ${round}: ${rst.out.lines.join(' | ')} ${logErrors(path.join(dir, `rwork${round}`, 'restore.log'))}`);
    const st = c.state();
    t.is(st?.status, 'running');
    await rst.out.waitForLine(new RegExp(`^tick ${at + 3}$`));
    t.deepEqual(ticks(rst.out.lines).slice(0, 3), [at + 1, at + 2, at + 3], `round ${round}: the count goes on from ${at}`);
    // Inside, it is PID 1 of its own pid namespace, in runc's cgroup, with its mounts.
    const status = fs.readFileSync(`/proc/${st!.pid}/status`, 'utf8');
    t.regex(status, /^NSpid:\s+\d+\s+1$/m);
    t.regex(fs.readFileSync(`/proc/${st!.pid}/cgroup`, 'utf8'), new RegExp(`/${c.id}$`, 'm'));
    const mounts = fs.readFileSync(`/proc/${st!.pid}/mountinfo`, 'utf8');
    for (const m of ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup']) {
      t.regex(mounts, new RegExp(` ${m.replace(/\//g, '\\/')} `), `${m} is mounted`);
    }
    const count = Number(fs.readFileSync(path.join(c.bundle, 'rootfs', 'data', 'count'), 'utf8'));
    t.true(count > at, 'the container still writes /data/count');
    outNow = rst.out;
  }
});

const O_CLOEXEC = 0o2000000;

/** fdinfo `flags` of a descriptor (octal). */
function fdFlags(pid: number, fd: number): number {
  return parseInt(/^flags:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1]!, 8);
}

test.serial('programs the restored container\'s shell starts write to its stdout: descriptors 1 and 2 come back without close-on-exec', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir)
    .withArgs(['sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick $i; echo child $i | cat; echo err $i | cat >&2; sleep 0.2; done']);
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^child 3$/);
  const before = c.state()!.pid;
  const flags = [1, 2].map((fd) => fdFlags(before, fd));
  // (The helper compares every descriptor of every task with the snapshot taken before the dump.)
  const { at, rst } = await checkpointAndRestore(t, c, dir, out);
  const pid = c.state()!.pid;
  t.deepEqual([1, 2].map((fd) => fdFlags(pid, fd)), flags, 'fdinfo flags of 1 and 2 as before');
  t.deepEqual([1, 2].map((fd) => fdFlags(pid, fd) & O_CLOEXEC), [0, 0]);
  await rst.out.waitForLine(new RegExp(`^child ${at + 2}$`));
  await rst.out.waitForLine(new RegExp(`^err ${at + 2}$`));
  t.false(rst.out.lines.some((l) => /Bad file descriptor/.test(l)), rst.out.lines.join(' | '));
  t.is(c.fdChecks, 1, 'the restored container\'s descriptors were compared with the checkpointed ones');
});

test.serial('a named cgroup v1 hierarchy mounted nowhere (left by some tool) does not stop a restore: a warning in the log', async (t) => {
  const { dir, c, out } = await started(t);
  // Made just before the checkpoint, removed with the container (whose tasks keep it): every
  // process on the host sees it meanwhile.
  const h = LeftoverHierarchy.create(`stasistest${process.pid}`);
  t.teardown(async () => {
    c.destroy();
    await h.destroy();
  });
  const { at, rst } = await checkpointAndRestore(t, c, dir, out);
  const log = fs.readFileSync(path.join(dir, 'rwork', 'restore.log'), 'utf8');
  t.regex(log, new RegExp(`Warn: cg_root name=${h.name}:/: the hierarchy is mounted nowhere`));
  t.regex(fs.readFileSync(`/proc/${c.state()!.pid}/cgroup`, 'utf8'), new RegExp(`^\\d+:name=${h.name}:/$`, 'm'));
  await rst.out.waitForLine(new RegExp(`^tick ${at + 2}$`));
  c.destroy();
  await h.destroy();
});

test.serial('runc checkpoint --leave-running leaves the container running; its image restores from the checkpoint', async (t) => {
  const { dir, c, out } = await started(t);
  const img = path.join(dir, 'img');
  const before = c.state()!;
  const ck = c.checkpoint(stasisBin, img, path.join(dir, 'work'), ['--leave-running']);
  t.is(ck.code, 0, `${ck.stderr} ${logErrors(path.join(dir, 'work', 'dump.log'))}`);
  await settle();
  const at = lastTick(out.lines);
  t.is(c.state()?.status, 'running');
  t.is(c.state()?.pid, before.pid);
  await out.waitForLine(new RegExp(`^tick ${at + 3}$`));
  t.regex(fs.readFileSync(`/proc/${before.pid}/status`, 'utf8'), /^TracerPid:\s+0$/m, 'not traced');
  t.notRegex(fs.readFileSync(`/proc/${before.pid}/status`, 'utf8'), /^State:\s+[tT]/m, 'not stopped');

  c.destroy();
  await out.closed;
  const rst = await c.restore(stasisBin, img, path.join(dir, 'rwork'));
  t.is(rst.code, 0, `${rst.out.lines.join(' | ')} ${logErrors(path.join(dir, 'rwork', 'restore.log'))}`);
  await rst.out.waitForLine(/^tick \d+$/);
  await rst.out.waitForLine(new RegExp(`^tick ${ticks(rst.out.lines)[0]! + 2}$`));
  // It goes on from the checkpoint: the tick before its first was the original's, at the time.
  const [first, second, third] = ticks(rst.out.lines);
  t.deepEqual([second, third], [first! + 1, first! + 2]);
  t.true(ticks(out.lines).includes(first! - 1), `tick ${first! - 1} was printed by the original`);
  t.true(first! < lastTick(out.lines), 'the restored counter starts behind where the original ended');
});

test.serial('restoring a container from corrupted images fails cleanly: no container, process, mount or cgroup left', async (t) => {
  const { dir, c } = await started(t);
  const img = path.join(dir, 'img');
  t.is(c.checkpoint(stasisBin, img, path.join(dir, 'work')).code, 0, logErrors(path.join(dir, 'work', 'dump.log')));
  const cgBefore = c.cgroupDirs();
  // The contents of /dev are garbage: found once the container's namespaces and first mounts
  // exist, which must all go again.
  const tars = fs.readdirSync(img).filter((f) => f.startsWith('tmpfs-dev-'));
  t.true(tars.length > 0);
  for (const f of tars) fs.writeFileSync(path.join(img, f), 'not a tar file');
  fs.rmSync(path.join(img, MANIFEST_FILE)); // as CRIU's dumps: found late, not by the manifest
  const rst = await c.restore(stasisBin, img, path.join(dir, 'rwork'));
  t.not(rst.code, 0);
  t.regex(rst.out.lines.join('\n'), /criu failed/);
  t.is(c.state(), undefined, 'no container');
  t.deepEqual(c.leftoverMounts(), [], 'no mount left');
  t.deepEqual(c.cgroupDirs(), [], `no cgroup left (before: ${cgBefore.join(', ')})`);
  const log = fs.readFileSync(path.join(dir, 'rwork', 'restore.log'), 'utf8');
  t.regex(log, /Error: mountpoints-\d+\.img: namespaces of task \d+: restoring the tmpfs at \/\S+: \S*tmpfs-dev-\d+\.tar\.gz\.img: incorrect header check/);
  // Nothing of the container runs on: no process has the bundle's busybox as its executable.
  const busybox = fs.statSync(path.join(c.bundle, 'rootfs', 'bin', 'busybox'));
  const running = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const st = fs.statSync(`/proc/${p}/exe`);
      return st.ino === busybox.ino && st.dev === busybox.dev && alive(Number(p));
    } catch {
      return false;
    }
  });
  t.deepEqual(running, []);
});

test.serial('a container with a terminal (--console-socket) is restored with a new terminal, handed over through orphan-pts-master', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir).withTerminal();
  t.teardown(() => c.destroy());
  const sock = path.join(dir, 'console.sock');
  const consoleReader = await underReaper(['/usr/bin/python3', consoleSocketPy, sock]);
  t.teardown(() => consoleReader.kill());
  await consoleReader.waitForLine(/^listening$/);
  await c.run(['--console-socket', sock]);
  await consoleReader.waitForLine(/^console 1: tick 3$/);

  const ck = c.checkpoint(stasisBin, path.join(dir, 'img'), path.join(dir, 'work'));
  t.is(ck.code, 0, `${ck.stderr} ${logErrors(path.join(dir, 'work', 'dump.log'))}`);
  await consoleReader.waitForLine(/^closed 1$/);
  const onFirst = consoleReader.lines.filter((l) => l.startsWith('console 1: ')).map((l) => l.slice('console 1: '.length));
  const at = lastTick(onFirst);

  const rst = await c.restore(stasisBin, path.join(dir, 'img'), path.join(dir, 'rwork'), ['--console-socket', sock]);
  t.is(rst.code, 0, `${rst.out.lines.join(' | ')} ${logErrors(path.join(dir, 'rwork', 'restore.log'))}`);
  await consoleReader.waitForLine(/^master 2$/);
  await consoleReader.waitForLine(new RegExp(`^console 2: tick ${at + 3}$`));
  const onSecond = consoleReader.lines.filter((l) => l.startsWith('console 2: tick ')).map((l) => Number(l.split(' ')[3]));
  t.deepEqual(onSecond.slice(0, 3), [at + 1, at + 2, at + 3], 'the count goes on, on the new terminal');
  // The shell's descriptors are the new pts, which is its controlling terminal again.
  const pid = c.state()!.pid;
  t.regex(fs.readlinkSync(`/proc/${pid}/fd/0`), /^\/dev\/pts\/\d+$/);
  const ttyNr = Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[4]);
  t.not(ttyNr, 0, 'it has a controlling terminal');
});

test.serial('a container dump that fails (an established TCP connection inside) leaves the container running, thawed and untraced', async (t) => {
  const dir = tmpDir(t);
  // A TCP connection over the container's own loopback, then the counter.
  const c = RuncContainer.create(dir).withArgs(['sh', '-c',
    '(while true; do sleep 1; done) | nc -l -p 7777 >/dev/null & sleep 0.3; ' +
    '(while true; do sleep 1; done) | nc 127.0.0.1 7777 >/dev/null & ' +
    'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']);
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 5$/);
  const ck = c.checkpoint(stasisBin, path.join(dir, 'img'), path.join(dir, 'work'));
  t.not(ck.code, 0);
  t.regex(logErrors(path.join(dir, 'work', 'dump.log')), /established TCP connection/);
  t.false(fs.existsSync(path.join(dir, 'img', 'inventory.img')), 'no image that looks complete');
  const st = c.state();
  t.is(st?.status, 'running');
  await settle();
  const at = lastTick(out.lines);
  await out.waitForLine(new RegExp(`^tick ${at + 3}$`));
  const freezer = c.cgroupDirs().find((d) => d.includes('/freezer/'));
  if (freezer) t.is(fs.readFileSync(path.join(freezer, 'freezer.state'), 'utf8').trim(), 'THAWED');
  for (const pid of fs.readFileSync(path.join(c.cgroupDirs()[0]!, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    t.regex(status, /^TracerPid:\s+0$/m, `process ${pid} is not traced`);
    t.notRegex(status, /^State:\s+[tT]/m, `process ${pid} is not stopped`);
  }
});

test.serial('a stopped process in a container (seized through the frozen cgroup) comes back stopped', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir).withArgs(['sh', '-c',
    'sleep 1000 & echo stopped $!; kill -STOP $!; i=0; while true; i=$((i+1)); do echo tick $i; sleep 0.2; done']);
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  const stateOf = (pid: number) => /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
  // The stopped child by its pid inside the container (the last NSpid), which a restore keeps.
  const inner = Number((await out.waitForLine(/^stopped \d+$/)).split(' ')[1]);
  const stopped = () => fs.readFileSync(path.join(c.cgroupDirs()[0]!, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)
    .map(Number).find((p) => /^NSpid:.*\s(\d+)$/m.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] === String(inner))!;
  t.is(stateOf(stopped()), 'T');
  const { at, rst } = await checkpointAndRestore(t, c, dir, out);
  await rst.out.waitForLine(new RegExp(`^tick ${at + 2}$`));
  t.is(stateOf(stopped()), 'T', 'the child is still stopped');
});

test.serial('the container\'s ipc namespace keeps its sysctls and its SysV objects across two checkpoints', async (t) => {
  const { dir, c, out } = await started(t);
  const inIpc = (pid: number, ...cmd: string[]) => execFileSync('nsenter', ['-t', String(pid), '-i', ...cmd], { encoding: 'utf8' });
  inIpc(c.state()!.pid, 'sh', '-c', 'echo 12345 > /proc/sys/kernel/msgmax; echo 77 > /proc/sys/fs/mqueue/msg_max');
  const ck = c.checkpoint(stasisBin, path.join(dir, 'img'), path.join(dir, 'work'));
  t.is(ck.code, 0, `${ck.stderr} ${logErrors(path.join(dir, 'work', 'dump.log'))}`);
  await out.closed;
  const rst = await c.restore(stasisBin, path.join(dir, 'img'), path.join(dir, 'rwork'));
  t.is(rst.code, 0, `${rst.out.lines.join(' | ')} ${logErrors(path.join(dir, 'rwork', 'restore.log'))}`);
  const pid = c.state()!.pid;
  // The restored container ticks on before it is checkpointed again: the second restore's count
  // goes on from its last tick (waited for, not assumed: a loaded machine may take seconds).
  await rst.out.waitForLine(/^tick \d+$/, 60_000);
  t.is(inIpc(pid, 'cat', '/proc/sys/kernel/msgmax').trim(), '12345');
  t.is(inIpc(pid, 'cat', '/proc/sys/fs/mqueue/msg_max').trim(), '77');
  t.is(execFileSync('cat', ['/proc/sys/kernel/msgmax'], { encoding: 'utf8' }).trim() === '12345', false, 'the host\'s own value is untouched');

  // SysV objects made in the restored container survive a second checkpoint and restore.
  inIpc(pid, 'ipcmk', '-M', '8192', '-p', '0640');
  inIpc(pid, 'ipcmk', '-S', '3');
  inIpc(pid, 'ipcmk', '-Q');
  const listing = (p: number) => ['-m', '-s', '-q'].map((k) => inIpc(p, 'ipcs', k, '-c').trim() + inIpc(p, 'ipcs', k).trim()).join('\n');
  const before = listing(pid);
  t.regex(before, /0x[0-9a-f]+ +\d+ +root +640 +8192/);
  const ck2 = c.checkpoint(stasisBin, path.join(dir, 'img2'), path.join(dir, 'work2'));
  t.is(ck2.code, 0, `${ck2.stderr} ${logErrors(path.join(dir, 'work2', 'dump.log'))}`);
  await rst.out.closed;
  const at = lastTick(rst.out.lines);
  const rst2 = await c.restore(stasisBin, path.join(dir, 'img2'), path.join(dir, 'rwork2'));
  t.is(rst2.code, 0, `${rst2.out.lines.join(' | ')} ${logErrors(path.join(dir, 'rwork2', 'restore.log'))}`);
  const pid2 = c.state()!.pid;
  t.is(listing(pid2), before, 'the same keys, ids, owners, modes and sizes');
  t.is(inIpc(pid2, 'cat', '/proc/sys/kernel/msgmax').trim(), '12345');
  await rst2.out.waitForLine(new RegExp(`^tick ${at + 2}$`), 60_000);
});

test.serial('a container with its own cgroup namespace comes back in a new one, rooted at its cgroup', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  const file = path.join(c.bundle, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  config.linux.namespaces.push({ type: 'cgroup' });
  fs.writeFileSync(file, JSON.stringify(config));
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  const before = c.state()!.pid;
  const seenInside = (pid: number) => execFileSync('nsenter', ['-t', String(pid), '-C', 'cat', `/proc/${pid}/cgroup`], { encoding: 'utf8' });
  t.regex(seenInside(before), /^0::\/$/m, 'inside, its cgroup is the namespace root');
  const { at, rst } = await checkpointAndRestore(t, c, dir, out);
  const pid = c.state()!.pid;
  t.not(fs.readlinkSync(`/proc/${pid}/ns/cgroup`), fs.readlinkSync('/proc/self/ns/cgroup'));
  t.regex(seenInside(pid), /^0::\/$/m);
  t.regex(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'), new RegExp(`^0::/${c.id}$`, 'm'));
  // Its /sys/fs/cgroup/pids shows its own cgroup (the mount's root, seen from the host).
  const pidsMount = fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === '/sys/fs/cgroup/pids');
  t.is(pidsMount?.split(' ')[3], `/${c.id}`);
  await rst.out.waitForLine(new RegExp(`^tick ${at + 2}$`));
});

test.serial('mount propagation comes back: a bind slave of a shared host mount still receives the host\'s new mounts, a private one does not, a shared tmpfs stays shared', async (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  execFileSync('mount', ['-t', 'tmpfs', 'stasis-prop', src]);
  const sub = path.join(src, 'sub');
  t.teardown(() => {
    for (const m of [sub, src]) {
      try {
        execFileSync('umount', ['-l', m], { stdio: 'ignore' });
      } catch {
        // not mounted
      }
    }
  });
  execFileSync('mount', ['--make-shared', src]);
  fs.mkdirSync(sub);
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  const file = path.join(c.bundle, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  config.mounts.push(
    { destination: '/slave', type: 'bind', source: src, options: ['rbind', 'rslave'] },
    { destination: '/priv', type: 'bind', source: src, options: ['rbind', 'rprivate'] },
    { destination: '/shr', type: 'tmpfs', source: 'tmpfs', options: ['shared'] },
  );
  fs.writeFileSync(file, JSON.stringify(config));
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  // The optional fields of each of the three mounts, as mountinfo shows them.
  const tags = (pid: number) => Object.fromEntries(fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n')
    .map((l) => l.split(' ')).filter((f) => ['/slave', '/priv', '/shr'].includes(f[4]!))
    .map((f) => [f[4], f.slice(6, f.indexOf('-')).map((x) => x.split(':')[0]).join(' ')]));
  const before = tags(c.state()!.pid);
  t.deepEqual(before, { '/slave': 'master', '/priv': '', '/shr': 'shared' });
  const { at, rst } = await checkpointAndRestore(t, c, dir, out);
  const pid = c.state()!.pid;
  t.deepEqual(tags(pid), before);
  execFileSync('mount', ['-t', 'tmpfs', 'stasis-prop-late', sub]);
  fs.writeFileSync(path.join(sub, 'hello'), 'hi');
  t.is(fs.readFileSync(`/proc/${pid}/root/slave/sub/hello`, 'utf8'), 'hi', 'the host\'s new mount reached the slave');
  t.false(fs.existsSync(`/proc/${pid}/root/priv/sub/hello`), 'and not the private bind');
  await rst.out.waitForLine(new RegExp(`^tick ${at + 2}$`));
});

test.serial('a container in a network namespace its config names by path (as Podman\'s and pods\' are) is restored into the namespace runc hands over, and its server answers there', async (t) => {
  const dir = tmpDir(t);
  const ns = `stasis-t${process.pid}`;
  const [host, inside] = [`vh${process.pid % 100000}`, `vc${process.pid % 100000}`];
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); // takes the veth pair with it
    } catch {
      // gone
    }
  });
  execFileSync('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', inside, 'netns', ns]);
  execFileSync('ip', ['addr', 'add', '10.231.7.1/24', 'dev', host]);
  execFileSync('ip', ['link', 'set', host, 'up']);
  execFileSync('ip', ['-n', ns, 'addr', 'add', '10.231.7.2/24', 'dev', inside]);
  execFileSync('ip', ['-n', ns, 'link', 'set', inside, 'up']);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  const c = RuncContainer.create(dir).withArgs(['sh', '-c',
    'echo served > /data/index.html; httpd -p 10.231.7.2:8080 -h /data; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']);
  t.teardown(() => c.destroy());
  const file = path.join(c.bundle, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  config.linux.namespaces = config.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: `/var/run/netns/${ns}` } : n));
  fs.writeFileSync(file, JSON.stringify(config));
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  const get = () => new Promise<string>((resolve, reject) => {
    const req = http.get('http://10.231.7.2:8080/index.html', { timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 5 s')));
    req.on('error', reject);
  });
  t.is(await get(), 'served\n');
  const { at, rst } = await checkpointAndRestore(t, c, dir, out);
  const pid = c.state()!.pid;
  t.is(fs.statSync(`/proc/${pid}/ns/net`).ino, fs.statSync(`/var/run/netns/${ns}`).ino, 'in the namespace runc named');
  t.is(await get(), 'served\n', 'the restored server answers on the namespace\'s veth');
  await rst.out.waitForLine(new RegExp(`^tick ${at + 2}$`));
});

test.serial('a container joined to a pod\'s ipc and uts namespaces (named by path) is restored into them again (join_ns), their objects and names left as they are', async (t) => {
  const dir = tmpDir(t);
  // The "pod": a process with ipc and uts namespaces of its own, a hostname and a SysV segment.
  const pod = await underReaper(['/usr/bin/unshare', '--ipc', '--uts', 'sh', '-c',
    'hostname stasis-pod && ipcmk -M 4096 >/dev/null && echo ready && exec sleep 1000']);
  t.teardown(() => pod.kill());
  await pod.waitForLine(/^ready$/);
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  const file = path.join(c.bundle, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  delete config.hostname; // the uts namespace is the pod's
  config.linux.namespaces = config.linux.namespaces.map((n: { type: string }) =>
    (['ipc', 'uts'].includes(n.type) ? { type: n.type, path: `/proc/${pod.pid}/ns/${n.type}` } : n));
  fs.writeFileSync(file, JSON.stringify(config));
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  const segments = () => execFileSync('nsenter', ['-t', String(pod.pid), '-i', 'ipcs', '-m'], { encoding: 'utf8' });
  const before = segments();
  const { at, rst } = await checkpointAndRestore(t, c, dir, out);
  const pid = c.state()!.pid;
  for (const ns of ['ipc', 'uts']) t.is(fs.readlinkSync(`/proc/${pid}/ns/${ns}`), fs.readlinkSync(`/proc/${pod.pid}/ns/${ns}`), `the pod's ${ns} namespace`);
  t.is(execFileSync('nsenter', ['-t', String(pid), '-u', 'hostname'], { encoding: 'utf8' }).trim(), 'stasis-pod');
  t.is(segments(), before, 'the pod\'s SysV segment is there once, untouched');
  await rst.out.waitForLine(new RegExp(`^tick ${at + 2}$`));
});
