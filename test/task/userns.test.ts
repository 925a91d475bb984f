import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { killPid, lastTick, selfCheckInContainer, selfCheckRoundTrip, stasis, stasisBin, tmpDir } from '../helpers/stasis.js';
import { RuncContainer } from '../../test-containers/runc.js';
import { sharedDir } from '../helpers/paths.js';
import { mappedContainer, mappedRootfs, startUsernsTree } from '../helpers/userns-container.js';
import { decodeImage } from '../../images/image.js';
import { readImageFileSync } from '../../images/private-file.js';

const ITEMS = [
  'root-state', 'root-file', 'root-socketpair', 'p1-state', 'p1-file-f1', 'p1-file-f2', 'p1-socketpair',
  'p2-state', 'p2-file-f1', 'p2-file-f2', 'p3-state', 'p3-file-f1',
];

test.serial('a tree in two nested user namespaces (maps not identity, setgroups allowed in one and denied in the other) keeps its ids, groups and capability sets as seen inside, its maps, the ownership of its files as each task sees it and its unix socketpair', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'userns-tree', {
    afterReady: (_w, ready) => {
      const pids = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
      t.teardown(() => pids.forEach(killPid));
    },
  });
  for (const item of ITEMS) t.true(r.lines.includes(`ok ${item}`), item);
});

/** The tree in mode `mode` is refused at dump with `why` (its PIDs given), and runs on unharmed. */
async function refused(t: ExecutionContext, mode: string, why: (pids: number[]) => RegExp): Promise<void> {
  const { w, work, pids } = await startUsernsTree(t, [mode]);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', tmpDir(t)]);
  t.not(d.exitCode, 0);
  t.regex(d.stderr, why(pids));
  // Not restored: it checks itself as it runs.
  fs.writeFileSync(path.join(work, 'check'), '');
  await w.waitForLine(/^result /, 20_000);
  t.true(w.lines.includes('result PASS'), w.lines.join('\n'));
}

test.serial('threaded processes in the nested user namespaces keep their threads\' TIDs and credentials (the TIDs chosen through ns_last_pid)', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'userns-tree', {
    args: (work) => [work, 'threaded'],
    afterReady: (_w, ready) => {
      const pids = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
      t.teardown(() => pids.forEach(killPid));
    },
  });
  for (const item of [...ITEMS, 'root-thread']) t.true(r.lines.includes(`ok ${item}`), item);
});

test.serial('an ipc and a uts namespace unshared inside a nested user namespace (owned by it) come back owned by it: the SysV segment (attached), semaphores and message queue with their ids, contents, and owner, creator and mode as seen inside; the host and domain names', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'userns-tree', {
    args: (work) => [work, 'ipcns'],
    afterReady: (_w, ready) => {
      const pids = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
      t.teardown(() => pids.forEach(killPid));
    },
  });
  for (const item of [...ITEMS, 'p3-ipc', 'root-ipc']) t.true(r.lines.includes(`ok ${item}`), item);
});

test.serial('a network namespace owned by a user namespace of the tree is refused at dump in one line, and the tree runs on unharmed', async (t) => {
  await refused(t, 'netns', (pids) => new RegExp(`^stasis: process ${pids[3]}: its net namespace is owned by a user namespace of the tree, which stasis cannot restore yet$`));
});

test.serial('stasis restores CRIU 4.2\'s dump of the tree in one user namespace (CRIU dumps no nested one)', async (t) => {
  const { r } = await selfCheckRoundTrip(t, 'userns-tree', {
    args: (work) => [work, 'one'],
    dumpTool: [path.join(sharedDir, 'anchors/criu-4.2/criu')],
    afterReady: (_w, ready) => {
      const pids = [...ready.matchAll(/\d+/g)].map((m) => Number(m[0]));
      t.teardown(() => pids.forEach(killPid));
    },
  });
  for (const item of ITEMS) t.true(r.lines.includes(`ok ${item}`), item);
});

test.serial('the same tree in a runc container (its pid, mount, net, ipc and uts namespaces the host\'s user namespace\'s) checks itself after runc checkpoint and restore through stasis', async (t) => {
  const { restored } = await selfCheckInContainer(t, 'userns-tree');
  for (const item of ITEMS) t.true(restored.lines.includes(`ok ${item}`), item);
});

test.serial('in a runc container too, the ipc and uts namespaces the tree unshares inside its nested user namespace come back owned by it, with the SysV objects and names', async (t) => {
  const { restored } = await selfCheckInContainer(t, 'userns-tree', { args: ['ipcns'] });
  for (const item of [...ITEMS, 'p3-ipc', 'root-ipc']) t.true(restored.lines.includes(`ok ${item}`), item);
});

const CT_ITEMS = ['counter', 'counter-on', 'owner-mine', 'owner-theirs', 'owner-root', 'ids', 'uid_map', 'gid_map', 'setgroups', 'pid', 'mine-fd'];

/** The bundle of a userns-ct container with uid and gid mappings, its rootfs owned by its root. */
function mappedBundle(t: ExecutionContext): { dir: string; c: RuncContainer } {
  const dir = tmpDir(t, 'stasis-userns-ct-');
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  const rootfs = path.join(c.bundle, 'rootfs');
  c.withWorkload('userns-ct', ['/data']).privileged().editConfig(mappedContainer);
  mappedRootfs(rootfs);
  return { dir, c };
}

test.serial('a runc container with uid and gid mappings checkpointed and restored twice through stasis counts on from where it was each time, and checks itself after the second', async (t) => {
  const { dir, c } = mappedBundle(t);
  let out = await c.run();
  await out.waitForLine(/^ready\b/);
  for (const round of [1, 2]) {
    await out.waitForLine(/^tick \d+$/);
    const images = path.join(dir, `img${round}`);
    const ck = c.checkpoint(stasisBin, images, path.join(dir, `work${round}`));
    t.is(ck.code, 0, `checkpoint ${round}: ${ck.stderr}`);
    await out.closed;
    const before = lastTick(out.lines);
    const r = await c.restore(stasisBin, images, path.join(dir, `rwork${round}`));
    t.is(r.code, 0, `restore ${round}: ${r.out.lines.join(' | ')}`);
    out = r.out;
    const first = Number((await out.waitForLine(/^tick \d+$/)).split(' ')[1]);
    t.is(first, before + 1, `round ${round}: the counter goes on from ${before}`);
  }
  fs.writeFileSync(path.join(c.bundle, 'rootfs', 'data', 'check'), '');
  await out.waitForLine(/^result /, 20_000);
  t.deepEqual(out.lines.filter((l) => l.startsWith('FAIL')), []);
  for (const item of CT_ITEMS) t.true(out.lines.includes(`ok ${item}`), item);
});

test.serial('a runc container with uid and gid mappings (its root host uid 100000; its pid, mount, net, ipc and uts namespaces owned by its user namespace) goes on counting after checkpoint and restore through stasis, its files\' owners, ids, capabilities and /proc/self maps as before', async (t) => {
  const { restored } = await selfCheckInContainer(t, 'userns-ct', {
    configure: mappedContainer,
    prepare: mappedRootfs,
  });
  for (const item of CT_ITEMS) t.true(restored.lines.includes(`ok ${item}`), item);
});

test.serial('a threaded workload in a runc container with uid and gid mappings keeps its threads (their TIDs set by the process, in the container\'s pid namespace) and checks itself after checkpoint and restore through stasis', async (t) => {
  await selfCheckInContainer(t, 'threads', {
    configure: mappedContainer,
    prepare: mappedRootfs,
  });
});

// The in-container workloads (in-container.test.ts) in a container with uid and gid mappings.
for (const workload of ['timers', 'sysv', 'state', 'vma-flags', 'zombies', 'thread-timers', 'setuid', 'sessions', 'unix-sockets', 'nested-ipc']) {
  test.serial(`${workload} in a runc container with uid and gid mappings checks itself after checkpoint and restore through stasis`, async (t) => {
    await selfCheckInContainer(t, workload, { configure: mappedContainer, prepare: mappedRootfs });
  });
}

/**
 * A mapped userns-ct container with a bind mount of host directory `shared` (in a directory only
 * host root may search) on /shared.
 */
function withHiddenBind(t: ExecutionContext): { dir: string; c: RuncContainer; shared: string } {
  const { dir, c } = mappedBundle(t);
  const shared = path.join(tmpDir(t, 'stasis-hidden-'), 'shared');
  fs.mkdirSync(shared);
  fs.writeFileSync(path.join(shared, 'note'), 'from the host\n');
  c.editConfig((config) => {
    config.mounts.push({ destination: '/shared', type: 'bind', source: shared, options: ['rbind', 'ro'] });
  });
  fs.mkdirSync(path.join(c.bundle, 'rootfs', 'shared'));
  return { dir, c, shared };
}

test.serial('a runc container with uid and gid mappings and a bind mount of a host directory its root may not reach (its parent 0700, root\'s) is restored with the mount, which still shows the host directory', async (t) => {
  const { dir, c, shared } = withHiddenBind(t);
  t.is(fs.statSync(path.dirname(shared)).mode & 0o777, 0o700);
  const out = await c.run();
  await out.waitForLine(/^tick \d+$/);
  const ck = c.checkpoint(stasisBin, path.join(dir, 'img'), path.join(dir, 'work'));
  t.is(ck.code, 0, ck.stderr);
  await out.closed;
  const r = await c.restore(stasisBin, path.join(dir, 'img'), path.join(dir, 'rwork'));
  t.is(r.code, 0, `${r.out.lines.join(' | ')} ${fs.readFileSync(path.join(dir, 'rwork', 'restore.log'), 'utf8').split('\n').filter((l) => l.includes('Error')).join(' ')}`);
  await r.out.waitForLine(/^tick \d+$/);
  const pid = c.state()!.pid;
  t.is(fs.readFileSync(`/proc/${pid}/root/shared/note`, 'utf8'), 'from the host\n');
  fs.writeFileSync(path.join(shared, 'later'), 'after');
  t.is(fs.readFileSync(`/proc/${pid}/root/shared/later`, 'utf8'), 'after', 'the host directory itself');
});

test.serial('a restore of a mapped container whose bind mount\'s host directory is gone is refused in one line naming it', async (t) => {
  const { dir, c, shared } = withHiddenBind(t);
  const out = await c.run();
  await out.waitForLine(/^tick \d+$/);
  const images = path.join(dir, 'img');
  const ck = c.checkpoint(stasisBin, images, path.join(dir, 'work'));
  t.is(ck.code, 0, ck.stderr);
  await out.closed;
  fs.rmSync(shared, { recursive: true });
  // (runc checks its bind sources itself: stasis is asked directly, every other mount given as runc gives it)
  const file = fs.readdirSync(images).find((f) => /^mountpoints-\d+\.img$/.test(f))!;
  const keys = decodeImage(readImageFileSync(path.join(images, file)), file).entries
    .map((e) => (e.message as { ext_key?: string }).ext_key).filter((k): k is string => k !== undefined);
  t.true(keys.includes('/shared'), keys.join(' '));
  const maps = keys.flatMap((k) => ['--ext-mount-map', `${k}:${k === '/shared' ? shared : k}`]);
  const r = await stasis(['restore', '-D', images, '--root', path.join(c.bundle, 'rootfs'), '-d', ...maps]);
  t.not(r.exitCode, 0);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(r.stderr.trim(), new RegExp(`mount /shared is external \\(/shared\\): its host path ${shared} does not exist$`));
});
