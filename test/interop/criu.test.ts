// Interop with upstream CRIU 4.2 both ways: CRIU restores what stasis dumps (the single-process,
// threads and tree workloads, and a runc container), a tree goes through stasis → CRIU → stasis,
// and stasis restores CRIU's dump of a tree that holds a zombie. The CRIU binary is the one in
// shared/anchors (see its README); it runs as root, like the tests.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ImageDir, imageFileName, pagesFileName } from '../../images/index.js';
import { VMA, type MmEntry } from '../../task/mm.js';
import { readMemory } from '../../sys/mem.js';
import { startWorkload, underReaper, type Workload } from '../../test-containers/launch.js';
import { RuncContainer } from '../../test-containers/runc.js';
import { sharedDir } from '../helpers/paths.js';
import { fdKey, killPid, lastTick, stasis, stasisBin, tmpDir, waitForFreePids } from '../helpers/stasis.js';

const criuBin = path.join(sharedDir, 'anchors/criu-4.2/criu');

type Tool = 'stasis' | 'criu';

/** The Error lines of a criu-style log, for failure messages. */
function logErrors(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter((l) => /Error/.test(l)).join(' | ');
  } catch {
    return `(no ${path.basename(file)})`;
  }
}

/** Every PID and TID a dump's pstree.img names (CRIU's 0 for a zombie's thread left out). */
async function dumpedPids(dir: string): Promise<number[]> {
  const pstree = await (await ImageDir.open(dir)).messages('pstree.img');
  const ids = pstree.flatMap((e) => [Number(e.pid), ...((e.threads ?? []) as number[]).map(Number)]);
  return [...new Set(ids)].filter((id) => id !== 0);
}

/** `TOOL dump -t PID -D DIR [FLAGS]` (the tree is killed); asserts it succeeded. */
async function dumpWith(t: ExecutionContext, tool: Tool, pid: number, dir: string, flags: string[] = []): Promise<void> {
  const args = ['dump', '-t', String(pid), '-D', dir, '-v4', '-o', 'dump.log', ...flags];
  const d = tool === 'stasis' ? await stasis(args)
    : await execa(criuBin, args, { reject: false, all: true });
  t.is(d.exitCode, 0, `${tool} dump: ${d.all} ${logErrors(path.join(dir, 'dump.log'))}`);
}

/**
 * `TOOL restore -d` of DIR under a reaper, once every PID of the dump is free (the dumped tree
 * has been reaped), the restored tree's stdout being the reaper's pipe (`key` names the pipe the
 * dumped tree wrote to). Asserts the restore succeeded; the restored processes are killed (by
 * PID) when the test ends.
 */
async function restoreWith(t: ExecutionContext, tool: Tool, dir: string, key: string, flags: string[] = []): Promise<Workload> {
  const pids = await dumpedPids(dir);
  await waitForFreePids(pids);
  const args = ['restore', '-d', '-D', dir, '-v4', '-o', 'restore.log', '--inherit-fd', `fd[1]:${key}`, ...flags];
  const r = await underReaper(tool === 'stasis' ? [process.execPath, stasisBin, ...args] : [criuBin, ...args]);
  t.teardown(async () => {
    pids.forEach(killPid);
    await r.kill();
  });
  t.is(await r.exitOf(r.pid, 30_000), `exit ${r.pid} 0`, `${tool} restore: ${r.lines.join(' | ')} ${logErrors(path.join(dir, 'restore.log'))}`);
  return r;
}

/**
 * A self-checking workload (selfcheck.h) taken through `hops`: each hop is one dump and one
 * restore, by the tools named ('stasis→criu': stasis dumps, CRIU restores). After the last
 * restore the workload is told to check itself: every item must pass and the root exit 0.
 * Returns the lines of the last restore.
 */
async function selfCheckThrough(t: ExecutionContext, workload: string, hops: [Tool, Tool][],
  args: (work: string) => string[] = (d) => [d], flags: string[] = [], criuLoses: string[] = []): Promise<string[]> {
  const work = tmpDir(t, `stasis-${workload}-`);
  const w = await startWorkload(workload, args(work));
  t.teardown(() => w.kill());
  const ready = await w.waitForLine(/^ready\b/, 30_000);
  const root = w.pid;
  // The tree's processes as the workload names them (`family` lists its children), killed by
  // PID at the end whatever happened (last added, first run: before the reapers go).
  const named = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
  t.teardown(() => named.forEach(killPid));
  let current = w;
  for (const [i, [dumper, restorer]] of hops.entries()) {
    const dir = tmpDir(t);
    const key = fdKey(root, 1);
    await dumpWith(t, dumper, root, dir, flags);
    current = await restoreWith(t, restorer, dir, key, flags);
    t.true(fs.existsSync(`/proc/${root}`), `hop ${i + 1} (${dumper} → ${restorer}): the root runs again under its PID`);
  }
  fs.writeFileSync(path.join(work, 'check'), '');
  await current.waitForLine(/^result /, 20_000);
  const tolerated = hops[hops.length - 1]![1] === 'criu' ? criuLoses : [];
  const failed = current.lines.filter((l) => l.startsWith('FAIL'));
  t.deepEqual(failed.filter((l) => !tolerated.some((item) => l.startsWith(`FAIL ${item}:`))), []);
  if (failed.length) {
    t.log(`CRIU's restore, as known: ${failed.join('; ')}`);
  } else {
    t.true(current.lines.includes('result PASS'), current.lines.join('\n'));
    t.is(await current.exitOf(root), `exit ${root} 0`, 'the restored root checked itself and exited 0');
  }
  return current.lines;
}

test.serial('stasis saves the vDSO\'s pages whole, byte for byte the kernel\'s (what CRIU\'s restore reads its symbols from), and no vvar page', async (t) => {
  const w = await startWorkload('counter', ['nanosleep', '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 2$/);
  const dir = tmpDir(t);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir, '--leave-running']);
  t.is(d.exitCode, 0, d.all);
  const images = await ImageDir.open(dir);
  const mm = (await images.message(imageFileName('MM', w.pid))) as unknown as MmEntry;
  const vdso = mm.vmas.find((v) => v.status & VMA.VDSO)!;
  const vvar = mm.vmas.find((v) => v.status & VMA.VVAR)!;
  t.truthy(vdso && vvar);
  const pagemap = await images.pagemap(imageFileName('PAGEMAP', w.pid));
  const run = pagemap.runs.find((r) => r.vaddr === vdso.start);
  t.is(run?.nrPages, Number(vdso.end - vdso.start) / 4096, 'one run: the whole vDSO');
  t.false(pagemap.runs.some((r) => r.vaddr < vvar.end && r.vaddr + BigInt(r.nrPages * 4096) > vvar.start), 'no vvar page');
  const saved = Buffer.alloc(run!.nrPages * 4096);
  const fd = fs.openSync(images.file(pagesFileName(pagemap.pagesId)), 'r');
  fs.readSync(fd, saved, 0, saved.length, run!.offset!);
  fs.closeSync(fd);
  t.is(saved.subarray(0, 4).toString('latin1'), '\x7fELF');
  // The process runs on (--leave-running): its vDSO as it is now, after the dump, is the same.
  t.true(saved.equals(readMemory(w.pid, vdso.start, saved.length)), 'the saved pages are the task\'s vDSO');
});

test.serial('CRIU 4.2 restores stasis\'s dump of a single process (heap, signals, files, mappings, credentials, limits...), which checks itself and passes', async (t) => {
  // CRIU 4.2 does not restore a personality (not even from its own dumps): the workload keeps
  // the default one here.
  const lines = await selfCheckThrough(t, 'state', [['stasis', 'criu']], (d) => [d, 'default-personality']);
  for (const item of ['heap', 'pending', 'offset', 'private-mapping', 'creds', 'rlimit', 'madvise']) {
    t.true(lines.includes(`ok ${item}`), item);
  }
});

test.serial('CRIU 4.2 restores stasis\'s dump of a multi-threaded process: every thread keeps its TID, FPU modes, signals, alternate stack, credentials and rseq', async (t) => {
  const lines = await selfCheckThrough(t, 'threads', [['stasis', 'criu']]);
  for (const i of [0, 1, 2]) {
    for (const item of ['tid', 'fpu-modes', 'blocked', 'pending', 'altstack', 'creds', 'rseq']) {
      t.true(lines.includes(`ok t${i}-${item}`), `t${i}-${item}`);
    }
  }
  t.true(lines.includes('ok read-resumed'));
});

test.serial('CRIU 4.2 restores stasis\'s dump of a three-level tree with threads, shared files and sockets, a zombie and a stopped child', async (t) => {
  const lines = await selfCheckThrough(t, 'family', [['stasis', 'criu']]);
  for (const item of ['zombie', 'stream-socketpair-connected', 'datagram-socketpair-connected', 'eventfd-one-description']) {
    t.true(lines.includes(`ok ${item}`), item);
  }
});

test.serial('CRIU 4.2 restores stasis\'s dump of a datagram socket connected to one only a child holds (the peer is listed first, as CRIU needs)', async (t) => {
  const lines = await selfCheckThrough(t, 'dgram-peer', [['stasis', 'criu']]);
  t.true(lines.includes('ok child-received'), lines.join('\n'));
  t.true(lines.includes('ok parent-sent'));
});

// Files removed while open, mapped or a cwd, --link-remap with an inotify watch on a removed
// file, and file leases (test/files/ghosts.test.ts): through CRIU 4.2 alone (so the workloads
// check what CRIU does), and each way between CRIU and stasis (the images are CRIU's). The
// options go to dump and restore alike (CRIU takes leases again only with --file-locks).
// CRIU 4.2's restore loses the watch on the removed file itself (it queues IN_DELETE_SELF and
// IN_IGNORED on it, and IN_DELETE on the directory's watch): those two items are CRIU's own.
const GHOSTS: [string, string[], string[]][] = [
  ['ghost-fifo', [], []], ['ghost-mmap', [], []], ['ghost-cwd', [], []],
  ['link-remap', ['--link-remap'], ['watch-quiet', 'watch-removed-file']], ['leases', ['--file-locks'], []],
];
for (const [workload, flags, criuLoses] of GHOSTS) {
  for (const hop of [['criu', 'criu'], ['stasis', 'criu'], ['criu', 'stasis']] as [Tool, Tool][]) {
    test.serial(`${workload}${flags.length ? ` (${flags.join(' ')})` : ''}: ${hop[0]} dump → ${hop[1]} restore, and it checks itself`, async (t) => {
      await selfCheckThrough(t, workload, [hop], (d) => [d], flags, criuLoses);
    });
  }
}

// The unix-socket behaviours of CRIU's zdtm (issue 16) both ways, the images being CRIU's: a
// connection not accepted yet (the client's peer is the listener), files in flight (sk_packet
// scm rights naming files.img entries), sockets bound in removed directories, a datagram socket
// connected to itself. (unix-dgram's mount-namespace child is for the container flavour: CRIU
// restores no sub-task into a new mount namespace outside one. unix-scm's child, whose queue
// holds a pipe end the parent has the other end of, is left out: CRIU 4.2 restores that queue
// only now and then, from its own dumps too.)
for (const [workload, ...args] of [['unix-pending'], ['unix-scm', 'no-child'], ['unix-gone'], ['unix-dgram']]) {
  test.serial(`${workload} goes stasis dump → CRIU restore → CRIU dump → stasis restore and passes its self-checks`, async (t) => {
    const lines = await selfCheckThrough(t, workload!, [['stasis', 'criu'], ['criu', 'stasis']], (d) => [d, ...args]);
    t.true(lines.includes('result PASS'));
  });
}

test.serial('a tree goes stasis dump → CRIU restore → CRIU dump → stasis restore and passes its self-checks', async (t) => {
  const lines = await selfCheckThrough(t, 'family', [['stasis', 'criu'], ['criu', 'stasis']]);
  t.true(lines.includes('ok zombie'));
});

test.serial('stasis restores CRIU\'s dump of a tree holding a zombie (pstree lists its thread as 0), and the tree passes its self-checks', async (t) => {
  const work = tmpDir(t, 'stasis-family-');
  const w = await startWorkload('family', [work]);
  t.teardown(() => w.kill());
  const ready = await w.waitForLine(/^ready\b/, 30_000);
  const named = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
  t.teardown(() => named.forEach(killPid));
  const zombie = Number(/ z=(\d+)/.exec(ready)![1]);
  const dir = tmpDir(t);
  const key = fdKey(w.pid, 1);
  await dumpWith(t, 'criu', w.pid, dir);
  // What made stasis fail: CRIU's entry for the zombie, and no ids image for it.
  const pstree = await (await ImageDir.open(dir)).messages('pstree.img');
  t.deepEqual(pstree.find((e) => Number(e.pid) === zombie)?.threads?.map(Number), [0]);
  t.false(fs.existsSync(path.join(dir, `ids-${zombie}.img`)));
  const show = await stasis(['show', '-D', dir]);
  t.regex(show.stdout, new RegExp(`Process ${zombie} "family": dead, 1 thread\n  thread ${zombie} "family"`), 'stasis show finds its core');
  const r = await restoreWith(t, 'stasis', dir, key);
  t.is(fs.readFileSync(`/proc/${zombie}/stat`, 'utf8').split(') ')[1]![0], 'Z', 'the zombie is a zombie again');
  fs.writeFileSync(path.join(work, 'check'), '');
  await r.waitForLine(/^result /, 20_000);
  t.deepEqual(r.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(r.lines.includes('ok zombie'), 'its parent reaps it with its exit status 42');
  t.true(r.lines.includes('result PASS'), r.lines.join('\n'));
  t.is(await r.exitOf(w.pid), `exit ${w.pid} 0`);
});

test.serial('runc --criu CRIU 4.2 restores a container checkpointed with runc --criu stasis, and its counter goes on', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  const out = await c.run();
  await out.waitForLine(/^tick 3$/);
  const img = path.join(dir, 'img');
  const ck = c.checkpoint(stasisBin, img, path.join(dir, 'work'));
  t.is(ck.code, 0, `${ck.stderr} ${logErrors(path.join(dir, 'work', 'dump.log'))}`);
  t.is(c.state(), undefined, 'the checkpointed container is gone');
  await out.closed;
  const at = lastTick(out.lines);

  // The descriptor invariant (test-containers/fds.ts), but for the stdio pipes runc hands over
  // (inherit_fd): CRIU 4.2 reopens them with O_LARGEFILE, in its own checkpoints' restores too.
  const stdio = [0, 1, 2].map((fd) => ({ task: 'root' as const, fd, why: 'CRIU 4.2 reopens inherited pipes with O_LARGEFILE' }));
  const rst = await c.restore(criuBin, img, path.join(dir, 'rwork'), [], { exclude: stdio });
  t.is(c.fdChecks, 1, 'the other descriptors were compared');
  t.is(rst.code, 0, `${rst.out.lines.join(' | ')} ${logErrors(path.join(dir, 'rwork', 'restore.log'))}`);
  const st = c.state();
  t.is(st?.status, 'running');
  await rst.out.waitForLine(new RegExp(`^tick ${at + 3}$`));
  const ticks = rst.out.lines.filter((l) => /^tick \d+$/.test(l)).map((l) => Number(l.slice(5)));
  t.deepEqual(ticks.slice(0, 3), [at + 1, at + 2, at + 3], `the count goes on from ${at}`);
  t.regex(fs.readFileSync(`/proc/${st!.pid}/status`, 'utf8'), /^NSpid:\s+\d+\s+1$/m, 'PID 1 of its own pid namespace');
  t.regex(fs.readFileSync(`/proc/${st!.pid}/cgroup`, 'utf8'), new RegExp(`/${c.id}$`, 'm'), 'in runc\'s cgroup');
  const count = Number(fs.readFileSync(path.join(c.bundle, 'rootfs', 'data', 'count'), 'utf8'));
  t.true(count > at, 'the container still writes /data/count');
});

test.serial('a container\'s tmpfs contents go CRIU 4.2 checkpoint (GNU tar --sparse) → stasis restore → stasis checkpoint → CRIU 4.2 restore: a sparse file, a symlink and a fifo in /dev/shm', async (t) => {
  const dir = tmpDir(t);
  const c = RuncContainer.create(dir).withArgs(['sh', '-c', [
    'dd if=/dev/zero of=/dev/shm/sparse bs=1 count=1 seek=10000000 2>/dev/null', 'echo hello > /dev/shm/note',
    'ln -s note /dev/shm/link', 'mkfifo /dev/shm/fifo',
    'i=0; while true; do i=$((i+1)); echo tick $i $(stat -c %s /dev/shm/sparse) $(cat /dev/shm/link) $(stat -c %F /dev/shm/fifo); sleep 0.2; done',
  ].join('; ')]);
  t.teardown(() => c.destroy());
  let out = await c.run();
  const line = /^tick (\d+) 10000001 hello fifo$/;
  await out.waitForLine(line);
  const hops: [string, string][] = [[criuBin, stasisBin], [stasisBin, criuBin]];
  for (const [i, [dumper, restorer]] of hops.entries()) {
    const img = path.join(dir, `img${i}`);
    const ck = c.checkpoint(dumper, img, path.join(dir, `work${i}`));
    t.is(ck.code, 0, `${ck.stderr} ${logErrors(path.join(dir, `work${i}`, 'dump.log'))}`);
    await out.closed;
    t.true(fs.readdirSync(img).some((f) => /^tmpfs-dev-\d+\.tar\.gz\.img$/.test(f)));
    const stdio = [0, 1, 2].map((fd) => ({ task: 'root' as const, fd, why: 'CRIU 4.2 reopens inherited pipes with O_LARGEFILE' }));
    const rst = await c.restore(restorer, img, path.join(dir, `rwork${i}`), [], { exclude: stdio });
    t.is(rst.code, 0, `${rst.out.lines.join(' | ')} ${logErrors(path.join(dir, `rwork${i}`, 'restore.log'))}`);
    out = rst.out;
    await out.waitForLine(line);
    const pid = c.state()!.pid;
    const shm = `/proc/${pid}/root/dev/shm/sparse`;
    t.true(fs.statSync(shm).blocks * 512 < 1024 * 1024, `${path.basename(restorer)}: the sparse file keeps its hole`);
  }
});

// The fdstate workload's modes (file flags and owners, a deleted file's attributes, UDP
// shutdown, packet sockets, epoll watches through closed fds, fanotify, strict seccomp) both
// ways: CRIU restores stasis's dump, stasis restores CRIU's.
for (const mode of ['pipe-flags', 'fown', 'file-attr', 'udp-shutdown', 'packet', 'epoll-closed', 'fanotify', 'seccomp-strict']) {
  for (const hop of [['stasis', 'criu'], ['criu', 'stasis']] as [Tool, Tool][]) {
    test.serial(`fdstate ${mode}: ${hop[0]} dumps, ${hop[1]} restores, and the workload's checks pass`, async (t) => {
      await selfCheckThrough(t, 'fdstate', [hop], (d) => [d, mode]);
    });
  }
}

// Workloads for behaviours that CRIU's own suite checks (maps02, zombie00, pthread_timers,
// mlock_setuid, seccomp_filter): CRIU 4.2 restores what stasis dumped, and stasis what CRIU
// dumped after that. CRIU cannot dump `setuid` here: it reads the limits of a process of another
// uid with prlimit64, which wants CAP_SYS_RESOURCE, and this machine's bounding set lacks it.
const throughCriu: [string, [Tool, Tool][], string[]][] = [
  ['vma-flags', [['stasis', 'criu'], ['criu', 'stasis']],
    ['noreserve-dontdump', 'locked-sequential', 'dontfork', 'hugepage', 'mergeable', 'noreserve-random-wipeonfork', 'growsdown', 'droppable']],
  ['zombies', [['stasis', 'criu'], ['criu', 'stasis']], ['exit-0', 'exit-3', 'sigkill', 'sigsegv', 'sigterm']],
  ['thread-timers', [['stasis', 'criu'], ['criu', 'stasis']], ['thread-timer-not-for-main', 'thread-timer-fires-in-worker', 'sigev-thread-fires']],
  ['setuid', [['stasis', 'criu']], ['main-creds', 'mlocked-after-setuid', 'K-creds', 'child-K', 'S-creds', 'child-S-killed-by-its-filter']],
];
for (const [workload, hops, items] of throughCriu) {
  test.serial(`${workload} goes ${hops.map(([d, r]) => `${d} dump → ${r} restore`).join(' → ')} and passes its self-checks`, async (t) => {
    const lines = await selfCheckThrough(t, workload, hops);
    for (const item of items) t.true(lines.includes(`ok ${item}`), item);
  });
}

// Memory a parent and its child share (workloads/cow.c, memfds.c): CRIU 4.2 passes the
// workloads itself, and each tool restores the other's dump of them.
for (const workload of ['cow', 'memfds']) {
  test.serial(`${workload}: CRIU 4.2 dumps and restores it, and it passes its self-checks`, async (t) => {
    await selfCheckThrough(t, workload, [['criu', 'criu']]);
  });
  test.serial(`${workload}: stasis dump → CRIU restore → CRIU dump → stasis restore, and it passes its self-checks`, async (t) => {
    await selfCheckThrough(t, workload, [['stasis', 'criu'], ['criu', 'stasis']]);
  });
}
