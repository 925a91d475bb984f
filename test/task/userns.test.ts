import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { killPid, lastTick, selfCheckInContainer, selfCheckRoundTrip, stasis, stasisBin, tmpDir } from '../helpers/stasis.js';
import { startWorkload } from '../../test-containers/launch.js';
import { RuncContainer } from '../../test-containers/runc.js';
import { sharedDir } from '../helpers/paths.js';
import { mappedContainer, mappedRootfs } from '../helpers/userns-container.js';

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
  const work = tmpDir(t, 'stasis-userns-tree-');
  const w = await startWorkload('userns-tree', [work, mode]);
  const pids: number[] = [];
  t.teardown(async () => {
    pids.forEach(killPid);
    await w.kill();
  });
  const ready = await w.waitForLine(/^ready\b/);
  pids.push(...[...ready.matchAll(/\d+/g)].map((m) => Number(m[0])));
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

test.serial('an ipc namespace owned by a user namespace of the tree is refused at dump in one line, and the tree runs on unharmed', async (t) => {
  await refused(t, 'ipcns', (pids) => new RegExp(`^stasis: process ${pids[3]}: its ipc namespace is owned by a user namespace of the tree, which stasis cannot restore yet$`));
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
for (const workload of ['timers', 'sysv', 'state', 'vma-flags', 'zombies', 'thread-timers', 'setuid', 'sessions', 'unix-sockets']) {
  test.serial(`${workload} in a runc container with uid and gid mappings checks itself after checkpoint and restore through stasis`, async (t) => {
    await selfCheckInContainer(t, workload, { configure: mappedContainer, prepare: mappedRootfs });
  });
}
