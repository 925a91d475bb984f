import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { killPid, selfCheckInContainer, selfCheckRoundTrip, stasis, tmpDir } from '../helpers/stasis.js';
import { startWorkload } from '../../test-containers/launch.js';
import { sharedDir } from '../helpers/paths.js';

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

/** runc's config for a container whose root is host uid/gid 100000 (its rootfs owned by it). */
function mappedContainer(config: Record<string, any>): void {
  config.linux.namespaces = [...config.linux.namespaces.filter((n: { type: string }) => n.type !== 'user'), { type: 'user' }];
  config.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
  config.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
}

test.serial('a runc container with uid and gid mappings (its root host uid 100000; its pid, mount, net, ipc and uts namespaces owned by its user namespace) goes on counting after checkpoint and restore through stasis, its files\' owners, ids, capabilities and /proc/self maps as before', async (t) => {
  const { restored } = await selfCheckInContainer(t, 'userns-ct', {
    configure: mappedContainer,
    prepare: (rootfs) => {
      execFileSync('chown', ['-R', '100000:100000', rootfs]);
      // every directory above it searchable by the container's root
      for (let d = path.dirname(rootfs); d !== '/'; d = path.dirname(d)) fs.chmodSync(d, fs.statSync(d).mode | 0o011);
    },
  });
  for (const item of ['counter', 'counter-on', 'owner-mine', 'owner-theirs', 'owner-root', 'ids', 'uid_map', 'gid_map', 'setgroups', 'pid', 'mine-fd']) {
    t.true(restored.lines.includes(`ok ${item}`), item);
  }
});
