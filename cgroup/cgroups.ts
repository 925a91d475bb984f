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
