// ipc and uts namespaces nested in a dumped tree: those of a process that are not the root's
// (one a process unshared, inside the tree's user namespace or not). Each is saved as the
// tree's own are (namespaces.ts, sysv-ipc.ts) under its own id: utsns-N.img, ipcns-var-N.img,
// ipcns-{shm,sem,msg}-N.img; the user namespace of the tree owning one lists it (userns.ts).
//
// Restore: each is made by a seed of its own before any of its processes' memory is restored
// (a segment attached there is attached again in it), from inside its owner (made first, the
// seed its root there), so that it is owned as it was; its names, sysctls and SysV objects are
// set there. Each process then enters its own as soon as it is cloned, on the host (which may
// enter any), or goes back to the root's from one its parent was in.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import { readNamespaces } from '../sys/proc/index.js';
import { CLONE, openSeed } from './clone.js';
import { dumpIpc, restoreIpc, restoreUts, type IpcVarEntry, type UtsEntry } from './namespaces.js';
import { dumpSysvIpc, restoreSysvIpc, type IdsThrough, type SysvImages } from './sysv-ipc.js';
import { outside, type MadeUserNs } from './userns.js';

export const NESTED_KINDS = ['ipc', 'uts'] as const;
export type NestedKind = (typeof NESTED_KINDS)[number];

export const NESTED_FLAG: Record<NestedKind, number> = { ipc: CLONE.NEWIPC, uts: CLONE.NEWUTS };

export interface NestedNs {
  kind: NestedKind;
  ino: number;
  /** The first process of the tree in it (its contents are read through it). */
  pid: number;
}

/** The nested ipc and uts namespaces of the live processes `pids` (the root first), by inode. */
export function nestedNamespaces(pids: readonly number[]): Map<number, NestedNs> {
  const out = new Map<number, NestedNs>();
  if (pids.length < 2) return out;
  const root = readNamespaces(pids[0]!, [...NESTED_KINDS]);
  for (const pid of pids.slice(1)) {
    const links = readNamespaces(pid, [...NESTED_KINDS]);
    for (const kind of NESTED_KINDS) {
      const ino = links[kind]?.ino;
      if (ino === undefined || ino === root[kind]?.ino || out.has(ino)) continue;
      out.set(ino, { kind, ino, pid });
    }
  }
  return out;
}

/** A nested ipc namespace's sysctls and SysV objects (ids as its owner sees them: `through`). */
export function dumpNestedIpc(ns: NestedNs, through?: IdsThrough): { vars: IpcVarEntry; sysv: SysvImages } {
  return { vars: dumpIpc(ns.pid), sysv: dumpSysvIpc(ns.pid, through) };
}

/** What the restore makes a nested namespace from. */
export interface NestedNsImage {
  kind: NestedKind;
  id: number;
  uts?: UtsEntry;
  ipc?: IpcVarEntry;
  sysv?: SysvImages;
  /** The user namespace of the tree owning it (absent: the host's). */
  owner?: number;
}

/**
 * Namespace `e` made by a seed that unshares it inside `owner` (the user namespace owning it,
 * made; absent: the host's), as the owner's root where it maps one (the ipc sysctls are that
 * root's to write), its contents set there. Returns stasis's descriptor of it.
 */
export function makeNestedNs(e: NestedNsImage, owner?: MadeUserNs): number {
  // (not sharing stasis's memory: it changes its ids; its descriptors are a copy of stasis's,
  // the owner's among them)
  const seed = openSeed(false, false);
  try {
    const inj: Injector = seed.inj;
    if (owner) {
      inj.callChecked(SYS.setns, owner.fd, CLONE.NEWUSER);
      if (outside(owner.gid, 0) !== undefined) inj.callChecked(SYS.setresgid, 0, 0, 0);
      if (outside(owner.uid, 0) !== undefined) inj.callChecked(SYS.setresuid, 0, 0, 0);
    }
    inj.callChecked(SYS.unshare, NESTED_FLAG[e.kind]);
    if (e.uts) restoreUts(inj, e.uts);
    if (e.ipc) restoreIpc(inj, e.ipc);
    if (e.sysv) restoreSysvIpc(seed.pid, e.sysv, e.ipc, owner);
    return fs.openSync(`/proc/${seed.pid}/ns/${e.kind}`, 'r');
  } finally {
    seed.close();
  }
}
