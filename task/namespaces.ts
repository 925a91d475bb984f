// Which namespaces a dumped tree has of its own (a container's), and the small ones saved
// whole: uts (host and domain name, utsns-N.img). The mount namespace is mount-ns/, an empty
// network namespace net-ns/, pids are numbered in the tree's own pid namespace (pidns.ts).
//
// The kernel shows a uts namespace's names only to its members, so they are read with an
// injected uname() and put back with injected sethostname()/setdomainname().

import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import type { NsKind } from '../sys/proc/index.js';
import { CLONE } from './clone.js';
import type { TaskKobjIds } from './ids.js';

/** Namespaces stasis can give a restored tree of its own, and the clone flag for each. */
export const OWN_NS: Partial<Record<NsKind, { flag: number; field: keyof TaskKobjIds }>> = {
  pid: { flag: CLONE.NEWPID, field: 'pid_ns_id' },
  mnt: { flag: CLONE.NEWNS, field: 'mnt_ns_id' },
  uts: { flag: CLONE.NEWUTS, field: 'uts_ns_id' },
  ipc: { flag: CLONE.NEWIPC, field: 'ipc_ns_id' },
  net: { flag: CLONE.NEWNET, field: 'net_ns_id' },
};
const OTHER_NS: [string, keyof TaskKobjIds][] = [
  ['user', 'user_ns_id'], ['cgroup', 'cgroup_ns_id'], ['time', 'time_ns_id'],
];

/** Refuse, at dump, namespaces of the tree's own that stasis cannot restore. */
export function checkDumpNamespaces(pid: number, foreign: readonly NsKind[], emptyNet: boolean): void {
  const unsupported = foreign.filter((k) => !OWN_NS[k]);
  if (unsupported.length) {
    throw new Error(`process ${pid} is in its own ${unsupported.join(', ')} namespace${unsupported.length > 1 ? 's' : ''}, which stasis cannot dump yet`);
  }
  if (foreign.includes('net') && !emptyNet) {
    throw new Error(`process ${pid} has its own network namespace: stasis restores only an empty one (dump with --empty-ns net, runc's default without a network)`);
  }
}

/** The clone flags that give the restored root the namespaces its image has of its own. */
export function restoreNamespaceFlags(rootIds: TaskKobjIds, hostIds: TaskKobjIds): number {
  for (const [kind, field] of OTHER_NS) {
    if (rootIds[field] !== undefined && hostIds[field] !== undefined && rootIds[field] !== hostIds[field]) {
      throw new Error(`the dumped tree has its own ${kind} namespace, which stasis cannot restore yet`);
    }
  }
  let flags = 0;
  for (const ns of Object.values(OWN_NS)) {
    if (rootIds[ns.field] !== undefined && hostIds[ns.field] !== undefined && rootIds[ns.field] !== hostIds[ns.field]) flags |= ns.flag;
  }
  return flags;
}

export interface UtsEntry { nodename: string; domainname: string }

const UTS_LEN = 65;

export function utsnsImageName(nsId: number): string {
  return `utsns-${nsId}.img`;
}

/** Host and domain name of the task's uts namespace. */
export function dumpUts(inj: Injector): UtsEntry {
  const at = inj.scratch(UTS_LEN * 6);
  inj.callChecked(SYS.uname, at);
  const b = inj.readScratch(UTS_LEN * 6);
  const field = (i: number) => b.subarray(i * UTS_LEN, (i + 1) * UTS_LEN).toString('utf8').replace(/\0.*$/s, '');
  return { nodename: field(1), domainname: field(5) };
}

export function restoreUts(inj: Injector, e: UtsEntry): void {
  for (const [nr, name] of [[SYS.sethostname, e.nodename], [SYS.setdomainname, e.domainname]] as const) {
    const b = Buffer.from(name);
    inj.callChecked(nr, inj.writeScratch(Buffer.concat([b, Buffer.alloc(1)])), b.length);
  }
}
