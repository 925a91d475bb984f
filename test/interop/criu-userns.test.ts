// User namespaces and upstream CRIU 4.2 (shared/anchors), both ways, and where CRIU itself
// stops. CRIU's userns_entry has no parent and its restore makes every namespace of the tree in
// the root's user namespace: it dumps no nested user namespace and no tree whose user namespace
// does not own the tree's other namespaces, and restores no tree whose user namespace does not
// own its pid and mount namespaces (it mounts a proc of its own there) — not even its own dump.
// Each floor is shown in the same run on CRIU's dump (or its refusal) and on stasis's, which
// stasis then restores whole. What CRIU does restore, a runc container with uid and gid
// mappings, goes both ways.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { underReaper } from '../../test-containers/launch.js';
import { RuncContainer, type Output } from '../../test-containers/runc.js';
import { ownerUserNs } from '../../sys/nsfs.js';
import { readNamespaces } from '../../sys/proc/index.js';
import { sharedDir } from '../helpers/paths.js';
import { fdKey, killPid, lastTick, restoreUnderReaper, stasis, stasisBin, tmpDir, waitForFreePids } from '../helpers/stasis.js';
import { mappedContainer, mappedRootfs, startUsernsTree } from '../helpers/userns-container.js';

const criuBin = path.join(sharedDir, 'anchors/criu-4.2/criu');

/** What each task of userns-tree checks after restore. */
const ITEMS = [
  'root-state', 'root-file', 'root-socketpair', 'p1-state', 'p1-file-f1', 'p1-file-f2', 'p1-socketpair',
  'p2-state', 'p2-file-f1', 'p2-file-f2', 'p3-state', 'p3-file-f1',
];

/** The log CRIU wrote in DIR (or why there is none). */
function log(dir: string, name: string): string {
  try {
    return fs.readFileSync(path.join(dir, name), 'utf8');
  } catch (e) {
    return `(no ${name}: ${(e as Error).message})`;
  }
}

/** The Error lines of a log CRIU (or stasis) wrote in DIR, for failure messages. */
function errors(dir: string, name: string): string {
  return log(dir, name).split('\n').filter((l) => /Error|^stasis/.test(l)).join(' | ');
}

/** `criu dump` of the tree at `pid` into DIR (log dump.log there): its exit code. */
async function criuDump(pid: number, dir: string): Promise<number | undefined> {
  return (await execa(criuBin, ['dump', '-t', String(pid), '-D', dir, '-v4', '-o', 'dump.log'], { reject: false })).exitCode;
}

/**
 * `criu restore -d` of DIR under a reaper (restore.log there) fails, its log saying `why`; then
 * the PIDs of the tree it started are free again.
 */
async function criuRestoreFails(t: ExecutionContext, dir: string, key: string, pids: number[], why: RegExp): Promise<void> {
  await waitForFreePids(pids);
  const r = await underReaper([criuBin, 'restore', '-d', '-D', dir, '-v4', '-o', 'restore.log', '--inherit-fd', `fd[1]:${key}`]);
  t.teardown(async () => {
    pids.forEach(killPid);
    await r.kill();
  });
  t.regex(await r.exitOf(r.pid, 30_000), new RegExp(`^exit ${r.pid} [1-9]`), 'CRIU\'s restore fails');
  t.regex(log(dir, 'restore.log'), why);
  await waitForFreePids(pids);
}

/** stasis restores DIR (the tree at `pids`), which then checks every item itself. */
async function stasisRestores(t: ExecutionContext, dir: string, key: string, work: string, pids: number[]): Promise<void> {
  const r = await restoreUnderReaper(t, dir, key, pids[0]!);
  t.teardown(() => pids.forEach(killPid));
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  fs.writeFileSync(path.join(work, 'check'), '');
  await r.waitForLine(/^result /, 20_000);
  t.deepEqual(r.lines.filter((l) => l.startsWith('FAIL')), []);
  for (const item of ITEMS) t.true(r.lines.includes(`ok ${item}`), item);
  t.true(r.lines.includes('result PASS'), r.lines.join('\n'));
}

// CRIU 4.2 clones the root into a new user namespace and there mounts a proc of its own, which
// the kernel refuses in a user namespace that owns neither the tree's pid nor its mount
// namespace (fsopen: EPERM): the plain tree, whose namespaces are the host's.
const NO_PROC = /Error \(criu\/util\.c:\d+\): Unable to open the proc file system: Operation not permitted$/m;

test.serial('CRIU 4.2 cannot restore its own dump of a tree in one user namespace (its new proc refused there), and fails on stasis\'s dump of it the same way, which stasis restores whole', async (t) => {
  // CRIU's dump, and CRIU's restore of it.
  const a = await startUsernsTree(t, ['one']);
  const criuDir = tmpDir(t);
  const criuKey = fdKey(a.w.pid, 1);
  t.is(await criuDump(a.w.pid, criuDir), 0, errors(criuDir, 'dump.log'));
  await a.w.exitOf(a.w.pid);
  await criuRestoreFails(t, criuDir, criuKey, a.pids, NO_PROC);

  // stasis's dump of another such tree: CRIU stops at the same point, stasis restores it.
  const b = await startUsernsTree(t, ['one']);
  const dir = tmpDir(t);
  const key = fdKey(b.w.pid, 1);
  const d = await stasis(['dump', '-t', String(b.w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.stderr);
  await b.w.exitOf(b.w.pid);
  await criuRestoreFails(t, dir, key, b.pids, NO_PROC);
  await stasisRestores(t, dir, key, b.work, b.pids);
});

test.serial('CRIU 4.2 refuses to dump a tree in two nested user namespaces (the tree runs on), and refuses to restore stasis\'s dump of it, which stasis restores whole', async (t) => {
  const { w, work, pids } = await startUsernsTree(t, []);
  const criuDir = tmpDir(t);
  t.not(await criuDump(w.pid, criuDir), 0);
  t.regex(log(criuDir, 'dump.log'), new RegExp(`Error \\(criu/namespaces\\.c:\\d+\\): Can't dump nested user namespace for ${pids[1]}$`, 'm'));

  // The same tree, let go by CRIU, dumped by stasis.
  const dir = tmpDir(t);
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.stderr);
  await w.exitOf(w.pid);
  // CRIU's images have no nesting: a task in another user namespace than the root's is refused.
  await criuRestoreFails(t, dir, key, pids, /Error \(criu\/pstree\.c:\d+\): Can't restore sub-task in NS \(cflags 10000000\)$/m);
  await stasisRestores(t, dir, key, work, pids);
});

// In a runc container (no mappings: its namespaces the host's user namespace's), the tree's root
// is in a user namespace it made itself, which owns none of the container's namespaces: CRIU
// 4.2 dumps no such tree, nested or not.
const CT_FLOORS: [string, string[], RegExp][] = [
  ['two nested user namespaces', [], /Error \(criu\/namespaces\.c:\d+\): Can't dump nested user namespace for \d+$/m],
  ['one user namespace', ['one'], /Error \(criu\/namespaces\.c:\d+\): One or more namespaces doesn't belong to the target user namespace$/m],
];
for (const [what, mode, why] of CT_FLOORS) {
  test.serial(`runc --criu CRIU 4.2 refuses to checkpoint a container whose process tree is in ${what} of its own (the container runs on), which runc --criu stasis checkpoints and restores, and it checks itself`, async (t) => {
    const dir = tmpDir(t, 'stasis-userns-tree-ct-');
    const c = RuncContainer.create(dir);
    t.teardown(() => c.destroy());
    c.withWorkload('userns-tree', ['/data', ...mode]).privileged();
    const out = await c.run();
    await out.waitForLine(/^ready\b/);
    const refused = c.checkpoint(criuBin, path.join(dir, 'criu-img'), path.join(dir, 'criu-work'));
    t.not(refused.code, 0);
    t.regex(log(path.join(dir, 'criu-work'), 'dump.log'), why);
    t.is(c.state()?.status, 'running', 'the container runs on');
    const img = path.join(dir, 'img');
    const ck = c.checkpoint(stasisBin, img, path.join(dir, 'work'));
    t.is(ck.code, 0, `${ck.stderr} ${errors(path.join(dir, 'work'), 'dump.log')}`);
    await out.closed;
    const r = await c.restore(stasisBin, img, path.join(dir, 'rwork'));
    t.is(r.code, 0, `${r.out.lines.join(' | ')} ${errors(path.join(dir, 'rwork'), 'restore.log')}`);
    fs.writeFileSync(path.join(c.bundle, 'rootfs', 'data', 'check'), '');
    await r.out.waitForLine(/^result /, 20_000);
    t.deepEqual(r.out.lines.filter((l) => l.startsWith('FAIL')), []);
    for (const item of ITEMS) t.true(r.out.lines.includes(`ok ${item}`), item);
  });
}

// A runc container with uid and gid mappings (workloads/userns-ct.c; its pid, mount, net, ipc
// and uts namespaces owned by its user namespace) is what CRIU 4.2 restores: from inside the
// new user namespace, as the container's root (a host id of it), its restore opens images
// (timens-0.img, utsns-N.img...), mounts the container's filesystems with the ids their options
// name and untars their contents with GNU tar. The images' directory must let that uid through
// (runc makes it 0600: CRIU fails on its own checkpoint there), stasis gives its image files to
// the container's root (mode 0600 kept) and writes the ids as the namespace sees them.

const CT_ITEMS = ['counter', 'counter-on', 'owner-mine', 'owner-theirs', 'owner-root', 'ids', 'uid_map', 'gid_map', 'setgroups', 'pid', 'mine-fd'];
/** CRIU 4.2 reopens the inherited stdio pipes with O_LARGEFILE (in its own checkpoints' restores too). */
const STDIO = [0, 1, 2].map((fd) => ({ task: 'root' as const, fd, why: 'CRIU 4.2 reopens inherited pipes with O_LARGEFILE' }));

/** A started userns-ct container with mappings (deleted at the end), once it has said ready. */
async function mappedCt(t: ExecutionContext): Promise<{ dir: string; c: RuncContainer; out: Output }> {
  const dir = tmpDir(t, 'stasis-userns-ct-');
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  c.withWorkload('userns-ct', ['/data']).privileged().editConfig(mappedContainer);
  mappedRootfs(path.join(c.bundle, 'rootfs'));
  const out = await c.run();
  await out.waitForLine(/^ready\b/);
  return { dir, c, out };
}

test.serial('a runc container with uid and gid mappings goes runc --criu stasis checkpoint → CRIU 4.2 restore → CRIU checkpoint → stasis restore: it counts on each time, its namespaces owned by its user namespace, and checks itself', async (t) => {
  const ct = await mappedCt(t);
  const { dir, c } = ct;
  let { out } = ct;
  const hops: [string, string][] = [[stasisBin, criuBin], [criuBin, stasisBin]];
  for (const [i, [dumper, restorer]] of hops.entries()) {
    const hop = `${path.basename(dumper)} → ${path.basename(restorer)}`;
    await out.waitForLine(/^tick \d+$/);
    const img = path.join(dir, `img${i}`);
    fs.mkdirSync(img, { mode: 0o711 });
    const ck = c.checkpoint(dumper, img, path.join(dir, `work${i}`));
    t.is(ck.code, 0, `${hop}: checkpoint: ${ck.stderr} ${errors(path.join(dir, `work${i}`), 'dump.log')}`);
    await out.closed;
    const before = lastTick(out.lines);
    const r = await c.restore(restorer, img, path.join(dir, `rwork${i}`), [], { exclude: STDIO });
    t.is(r.code, 0, `${hop}: restore: ${r.out.lines.filter((l) => !/level=warning/.test(l)).join(' | ')} ${errors(path.join(dir, `rwork${i}`), 'restore.log')}`);
    out = r.out;
    t.is(Number((await out.waitForLine(/^tick \d+$/)).split(' ')[1]), before + 1, `${hop}: the counter goes on from ${before}`);
    const pid = c.state()!.pid;
    const user = readNamespaces(pid, ['user']).user!.ino;
    t.not(user, readNamespaces(process.pid, ['user']).user!.ino);
    for (const kind of ['pid', 'mnt', 'net', 'ipc', 'uts']) t.is(ownerUserNs(pid, kind), user, `${hop}: its ${kind} namespace is owned by its user namespace`);
  }
  fs.writeFileSync(path.join(c.bundle, 'rootfs', 'data', 'check'), '');
  await out.waitForLine(/^result /, 20_000);
  t.deepEqual(out.lines.filter((l) => l.startsWith('FAIL')), []);
  for (const item of CT_ITEMS) t.true(out.lines.includes(`ok ${item}`), item);
});

test.serial('in the images directory runc makes (0600), CRIU 4.2 cannot restore its own checkpoint of a runc container with uid and gid mappings, nor stasis\'s, the container\'s root refused its images; stasis restores both', async (t) => {
  for (const dumper of [criuBin, stasisBin]) {
    const { dir, c, out } = await mappedCt(t);
    await out.waitForLine(/^tick \d+$/);
    const img = path.join(dir, 'img');
    const ck = c.checkpoint(dumper, img, path.join(dir, 'work'));
    t.is(ck.code, 0, `${ck.stderr} ${errors(path.join(dir, 'work'), 'dump.log')}`);
    await out.closed;
    t.is(fs.statSync(img).mode & 0o777, 0o600, 'runc made the images directory 0600');
    const before = lastTick(out.lines);
    const failed = await c.restore(criuBin, img, path.join(dir, 'rwork'));
    t.not(failed.code, 0);
    // CRIU's first image opened in the container's user namespace (stasis writes no timens-0.img: its open fails as well)
    t.regex(log(path.join(dir, 'rwork'), 'restore.log'), /Error \(criu\/image\.c:\d+\): Unable to open timens-0\.img: Permission denied$/m);
    t.is(c.state(), undefined, 'no container is left of the failed restore');
    const r = await c.restore(stasisBin, img, path.join(dir, 'rwork2'), [], { exclude: STDIO });
    t.is(r.code, 0, `${r.out.lines.filter((l) => !/level=warning/.test(l)).join(' | ')} ${errors(path.join(dir, 'rwork2'), 'restore.log')}`);
    t.is(Number((await r.out.waitForLine(/^tick \d+$/)).split(' ')[1]), before + 1, `${path.basename(dumper)}'s checkpoint: the counter goes on from ${before}`);
    c.destroy();
  }
});
