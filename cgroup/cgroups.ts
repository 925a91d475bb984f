// cgroup.img: the cgroup sets the dumped tasks live in (which cgroup of each hierarchy), as
// criu writes them: set 1 is stasis's own (inventory.root_cg_set), set 2 the dumped tree's.
// Controller properties are not saved: on restore the runtime has made the cgroups already
// (runc moves the restoring criu into them, and the restored tasks are born there).

import fs from 'node:fs';

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

/** Mount point of the hierarchy with controller `ctrl` ("" = the v2 one, "name=x" named v1). */
function hierarchyMount(ctrl: string): string | undefined {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (sep < 0) continue;
    const type = f[sep + 1];
    const opts = (f[sep + 3] ?? '').split(',');
    if (ctrl === '' ? type === 'cgroup2' : type === 'cgroup' && ctrl.split(',').every((c) => opts.includes(c))) return f[4];
  }
  return undefined;
}

/**
 * Put a task (and so the tree it will fork) into the cgroup each cg_root names, before its
 * memory is restored so that the pages are charged there. A hierarchy that is not mounted, or
 * a cgroup that does not exist, fails the restore by name.
 */
export function placeInCgroups(pid: number, roots: readonly CgRoot[]): void {
  for (const r of roots) {
    const mount = hierarchyMount(r.ctrl);
    if (!mount) throw new Error(`cg_root ${r.ctrl || '(unified)'}:${r.path}: no such cgroup hierarchy is mounted`);
    const procs = `${mount}${r.path === '/' ? '' : r.path}/cgroup.procs`;
    try {
      fs.writeFileSync(procs, String(pid));
    } catch (e) {
      throw new Error(`cg_root ${r.ctrl || '(unified)'}:${r.path}: cannot move task ${pid} into it: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  }
}
