// Which kernel objects and namespaces tasks share (ids-PID.img, inventory.root_ids). Ids come
// from one counter per kind of object, handed out first to stasis's own task and namespaces —
// as CRIU does, so the first dumped task's files are fdinfo-2.img and namespace ids match
// CRIU's numbering (pid 1, net 2, ipc 3, uts 4, time 5, mnt 6, user 7, cgroup 8 on the host).

import { readNamespaces, type NsKind } from '../sys/proc/index.js';

export interface TaskKobjIds {
  vm_id: number; files_id: number; fs_id: number; sighand_id: number;
  pid_ns_id?: number; net_ns_id?: number; ipc_ns_id?: number; uts_ns_id?: number;
  mnt_ns_id?: number; user_ns_id?: number; cgroup_ns_id?: number; time_ns_id?: number;
}

/** CRIU's order for assigning namespace ids. */
const NS_ORDER: [NsKind, keyof TaskKobjIds][] = [
  ['pid', 'pid_ns_id'], ['net', 'net_ns_id'], ['ipc', 'ipc_ns_id'], ['uts', 'uts_ns_id'],
  ['time', 'time_ns_id'], ['mnt', 'mnt_ns_id'], ['user', 'user_ns_id'], ['cgroup', 'cgroup_ns_id'],
];
/** The links read for ids (not the *_for_children ones). */
const ID_KINDS = NS_ORDER.map(([kind]) => kind);

export class IdAllocator {
  private nextNs = 1;
  private ns = new Map<number, number>();
  private nextObj = 1;
  readonly rootIds: TaskKobjIds;
  /** Namespaces of stasis itself, by kind: a dumped task outside them is in a container. */
  readonly hostNs: Partial<Record<NsKind, number>> = {};

  constructor() {
    const own = readNamespaces('self');
    for (const [kind] of NS_ORDER) if (own[kind]) this.hostNs[kind] = own[kind]!.ino;
    this.rootIds = this.idsFor('self');
  }

  /**
   * Ids of a process. Objects (mm, fd table, fs, sighand) are per process: sharing them between
   * processes (CLONE_VM/FILES without CLONE_THREAD) is refused by the dump. A zombie has no
   * namespaces left to read (`withNs` false).
   */
  idsFor(pid: number | 'self', withNs = true): TaskKobjIds {
    const obj = this.nextObj++;
    const ids: TaskKobjIds = { vm_id: obj, files_id: obj, fs_id: obj, sighand_id: obj };
    if (!withNs) return ids;
    const links = readNamespaces(pid, ID_KINDS);
    for (const [kind, field] of NS_ORDER) {
      const link = links[kind];
      if (!link) continue;
      let id = this.ns.get(link.ino);
      if (id === undefined) {
        id = this.nextNs++;
        this.ns.set(link.ino, id);
      }
      (ids as unknown as Record<string, number>)[field] = id;
    }
    return ids;
  }

  /** The id given to the namespace of inode `ino` (undefined: none yet). */
  namespaceId(ino: number): number | undefined {
    return this.ns.get(ino);
  }

  /** Namespace kinds in which `pid` differs from stasis. */
  foreignNamespaces(pid: number): NsKind[] {
    const links = readNamespaces(pid);
    return NS_ORDER.map(([k]) => k).filter((k) => links[k] && this.hostNs[k] !== undefined && links[k]!.ino !== this.hostNs[k]);
  }
}
