// The numbers a dumped tree's pids have in the tree's own pid namespace: a container's init is
// 1 there, whatever stasis (on the host) calls it. Images hold those numbers (pstree.img,
// core-TID.img, ...), as criu writes them. For a tree in stasis's own pid namespace they are
// the same numbers.

import { readStatus } from '../sys/proc/index.js';
import type { SeizedTree, TreeProcess } from './tree.js';

export interface PidNumbering {
  /** A task's pid in the tree's namespace, from stasis's. */
  pid(host: number): number;
  pgid(p: TreeProcess): number;
  sid(p: TreeProcess): number;
}

export function pidNumbering(tree: SeizedTree): PidNumbering {
  const root = readStatus(tree.rootPid);
  const level = root.nsPid.length - 1;
  if (level === 0) return { pid: (h) => h, pgid: (p) => p.pgid, sid: (p) => p.sid };
  const map = new Map<number, number>();
  const groups = new Map<number, { pgid: number; sid: number }>();
  for (const p of tree.processes) {
    for (const tid of p.threads) {
      const st = readStatus(tid);
      if (st.nsPid.length !== level + 1) {
        throw new Error(`task ${tid} is in a pid namespace nested inside its container's: stasis cannot dump that yet`);
      }
      map.set(tid, st.nsPid[level]!);
      if (tid === p.pid) {
        // A group or session led from outside the container has no number inside it: 0.
        groups.set(p.pid, { pgid: st.nsPgid[level] ?? 0, sid: st.nsSid[level] ?? 0 });
      }
    }
  }
  return {
    pid: (h) => {
      const v = map.get(h);
      if (v === undefined) throw new Error(`task ${h} has no pid in the dumped tree's pid namespace`);
      return v;
    },
    pgid: (p) => groups.get(p.pid)!.pgid,
    sid: (p) => groups.get(p.pid)!.sid,
  };
}
