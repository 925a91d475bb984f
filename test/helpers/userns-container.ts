// User-namespace fixtures: runc bundles of containers with uid and gid mappings (the
// container's root is host uid and gid 100000, 65536 ids mapped, its other namespaces made in its
// user namespace by runc), and the userns-tree workload started as a plain tree.
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startWorkload, type Workload } from '../../test-containers/launch.js';
import { killPid, tmpDir } from './stasis.js';

/**
 * userns-tree (test-containers/workloads/userns-tree.c) with `args` after its work directory,
 * ready; its tasks' PIDs (root, P1, P2, P3) killed when the test ends.
 */
export async function startUsernsTree(t: ExecutionContext, args: string[]): Promise<{ w: Workload; work: string; pids: number[] }> {
  const work = tmpDir(t, 'stasis-userns-tree-');
  const w = await startWorkload('userns-tree', [work, ...args]);
  const pids: number[] = [];
  t.teardown(async () => {
    pids.forEach(killPid);
    await w.kill();
  });
  const ready = await w.waitForLine(/^ready\b/);
  pids.push(...[...ready.matchAll(/\d+/g)].map((m) => Number(m[0])));
  return { w, work, pids };
}

/** runc's config for a container whose root is host uid/gid 100000 (its rootfs owned by it). */
export function mappedContainer(config: Record<string, any>): void {
  config.linux.namespaces = [...config.linux.namespaces.filter((n: { type: string }) => n.type !== 'user'), { type: 'user' }];
  config.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
  config.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
}

/** The rootfs owned by the container's root (host 100000), every directory above it searchable. */
export function mappedRootfs(rootfs: string): void {
  execFileSync('chown', ['-R', '100000:100000', rootfs]);
  for (let d = path.dirname(rootfs); d !== '/'; d = path.dirname(d)) fs.chmodSync(d, fs.statSync(d).mode | 0o011);
}
