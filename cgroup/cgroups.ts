// cgroup.img: the cgroup sets the dumped tasks live in (which cgroup of each hierarchy), as
// criu writes them: set 1 is stasis's own (inventory.root_cg_set), set 2 the dumped tree's.
// Controller properties are not saved: on restore the runtime has made the cgroups already
// (runc moves the restoring criu into them, and the restored tasks are born there).

import fs from 'node:fs';
import { readMountinfo } from '../sys/proc/index.js';

interface Membership { name: string; path: string }

/** /proc/PID/cgroup: "ID:controllers:path" per hierarchy ("0::path" is the v2 one, name ""). */
export function readCgroupMembership(pid: number | 'self'): Membership[] {
  return fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').filter(Boolean).map((l) => {
    const [, ctrls, ...rest] = l.split(':');
    return { name: ctrls ?? '', path: rest.join(':') };
  }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function dumpCgroups(pid: number): Record<string, unknown> {
  const own = readCgroupMembership('self');
  const tree = readCgroupMembership(pid);
  const controllers = tree.filter((m) => m.name !== '').map((m) => ({
    cnames: m.name.split(','),
    dirs: m.path === '/' ? [] : [{ dir_name: m.path.replace(/^\//, ''), children: [], properties: [] }],
  }));
  return {
    sets: [{ id: 1, ctls: own }, { id: 2, ctls: tree }],
    controllers,
  };
}

/** A cg_root of criu's RPC (--cgroup-root): where a hierarchy's restored tasks go. */
export interface CgRoot { ctrl: string; path: string }

/** A cgroup hierarchy mounted in stasis's mount namespace. */
export interface CgroupHierarchy {
  mountPoint: string;
  v2: boolean;
  /** A v1 hierarchy's controllers and name= option (its superblock options); [] for v2. */
  controllers: string[];
}

export function cgroupHierarchies(): CgroupHierarchy[] {
  return readMountinfo('self').filter((m) => m.fstype === 'cgroup' || m.fstype === 'cgroup2').map((m) => ({
    mountPoint: m.mountPoint, v2: m.fstype === 'cgroup2',
    controllers: m.fstype === 'cgroup2' ? [] : m.superOptions.split(',').filter((o) => o !== 'rw' && o !== 'ro'),
  }));
}

/** Mount point of the hierarchy with controller `ctrl` ("" = the v2 one, "name=x" named v1). */
export function cgroupHierarchyMount(ctrl: string): string | undefined {
  return cgroupHierarchies().find((h) => (ctrl === '' ? h.v2 : !h.v2 && ctrl.split(',').every((c) => h.controllers.includes(c))))?.mountPoint;
}

/**
 * Put a task (and so the tree it will fork) into the cgroup each cg_root names, before its
 * memory is restored so that the pages are charged there. A hierarchy that is not mounted, or
 * a cgroup that does not exist, fails the restore by name.
 */
export function placeInCgroups(pid: number, roots: readonly CgRoot[]): void {
  for (const r of roots) {
    const mount = cgroupHierarchyMount(r.ctrl);
    if (!mount) throw new Error(`cg_root ${r.ctrl || '(unified)'}:${r.path}: no such cgroup hierarchy is mounted`);
    const procs = `${mount}${r.path === '/' ? '' : r.path}/cgroup.procs`;
    try {
      fs.writeFileSync(procs, String(pid));
    } catch (e) {
      throw new Error(`cg_root ${r.ctrl || '(unified)'}:${r.path}: cannot move task ${pid} into it: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  }
}
