// cgroup.img: the cgroup sets the dumped tasks live in (which cgroup of each hierarchy), as
// criu writes them: set 1 is stasis's own (inventory.root_cg_set), set 2 the dumped tree's.
// Controller properties are not saved: on restore the runtime has made the cgroups already
// (runc moves the restoring criu into them, and the restored tasks are born there).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MNT_DETACH, mount, umount2 } from '../sys/mount.js';
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
 * memory is restored so that the pages are charged there. A cgroup that does not exist fails
 * the restore by name. A v1 hierarchy mounted nowhere (a named one a tool left behind, which
 * runc passes on from its own /proc/self/cgroup) is coped with as criu does, with a warning:
 * where stasis is in it already the task is too (it was born there); elsewhere the hierarchy
 * is mounted for the move on a directory of stasis's own, and unmounted again. A named
 * hierarchy that no longer exists at all is left out, with a warning.
 */
export function placeInCgroups(pid: number, roots: readonly CgRoot[], warn: (msg: string) => void = () => {}): void {
  for (const r of roots) {
    const what = `cg_root ${r.ctrl || '(unified)'}:${r.path}`;
    const mountPoint = cgroupHierarchyMount(r.ctrl);
    if (mountPoint) {
      moveInto(what, pid, mountPoint, r.path);
      continue;
    }
    const own = readCgroupMembership('self').find((m) => sameControllers(m.name, r.ctrl));
    if (r.ctrl && !own && r.ctrl.split(',').every((c) => c.startsWith('name='))) {
      // Every process is in each hierarchy that exists: this one is gone since the dump named it
      // (its last cgroup removed). Mounting it would make a new, empty one.
      warn(`${what}: the named hierarchy no longer exists; left out`);
      continue;
    }
    if (!r.ctrl || !own) throw new Error(`${what}: no such cgroup hierarchy is mounted, nor is stasis in one`);
    if (own.path === r.path) {
      warn(`${what}: the hierarchy is mounted nowhere; the restored tree is in that cgroup already (stasis's own)`);
      continue;
    }
    warn(`${what}: the hierarchy is mounted nowhere; mounted for the restore to move the tree there`);
    withHierarchyMounted(what, r.ctrl, (dir) => moveInto(what, pid, dir, r.path));
  }
}

function moveInto(what: string, pid: number, mountPoint: string, cgPath: string): void {
  const procs = `${mountPoint}${cgPath === '/' ? '' : cgPath}/cgroup.procs`;
  try {
    fs.writeFileSync(procs, String(pid));
  } catch (e) {
    throw new Error(`${what}: cannot move task ${pid} into it: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
}

/** "cpu,cpuacct" names the same hierarchy as "cpuacct,cpu". */
function sameControllers(a: string, b: string): boolean {
  const x = a.split(',').sort();
  const y = b.split(',').sort();
  return x.length === y.length && x.every((c, i) => c === y[i]);
}

/** Run `fn` with v1 hierarchy `ctrl` mounted on a new directory (removed afterwards). */
function withHierarchyMounted(what: string, ctrl: string, fn: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-cgroup-'));
  try {
    const named = ctrl.split(',').filter((c) => c.startsWith('name='));
    // A named hierarchy without controllers is mounted with "none"; the options must name the
    // hierarchy exactly as it is, or the kernel refuses (EBUSY) or makes a new one.
    const opts = named.length && named.length === ctrl.split(',').length ? `none,${ctrl}` : ctrl;
    try {
      mount('cgroup', dir, 'cgroup', 0, opts);
    } catch (e) {
      throw new Error(`${what}: the hierarchy is mounted nowhere and cannot be mounted: ${(e as Error).message}`);
    }
    try {
      fn(dir);
    } finally {
      umount2(dir, MNT_DETACH);
    }
  } finally {
    fs.rmdirSync(dir);
  }
}
