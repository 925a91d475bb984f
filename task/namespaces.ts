// Which namespaces a dumped tree has of its own (a container's), and the small ones saved
// whole: uts (host and domain name, utsns-N.img). The mount namespace is mount-ns/, an empty
// network namespace net-ns/, pids are numbered in the tree's own pid namespace (pidns.ts).
//
// The kernel shows a uts namespace's names only to its members, so they are read with an
// injected uname() and put back with injected sethostname()/setdomainname().

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { CLOCK, clockNs } from '../sys/clock.js';
import { syscall } from '../sys/native.js';
import type { Injector, TaskCalls } from '../sys/inject.js';
import { O_RDONLY, O_WRONLY } from '../sys/fcntl.js';
import { openInTask, writeAllInTask } from '../files/reg.js';
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
  // Rooted, as a new cgroup namespace is, at the cgroup the restored tree is born in (runc moves
  // the restoring stasis into the container's cgroup first).
  cgroup: { flag: CLONE.NEWCGROUP, field: 'cgroup_ns_id' },
};
/**
 * Refuse, at dump, namespaces of the tree's own that stasis cannot restore. (User namespaces
 * are the tree's processes', one by one: task/userns.ts.)
 */
export function checkDumpNamespaces(pid: number, foreign: readonly NsKind[]): void {
  const unsupported = foreign.filter((k) => !OWN_NS[k] && k !== 'time' && k !== 'user');
  if (unsupported.length) {
    throw new Error(`process ${pid} is in its own ${unsupported.join(', ')} namespace${unsupported.length > 1 ? 's' : ''}, which stasis cannot dump yet`);
  }
}

/** Flag for a time namespace: not a clone flag (see restoreTimeNs), but marked the same way. */
export const NEWTIME = 0x80;

/** The clone flags that give the restored root the namespaces its image has of its own. */
export function restoreNamespaceFlags(rootIds: TaskKobjIds, hostIds: TaskKobjIds): number {
  let flags = 0;
  if (rootIds.time_ns_id !== undefined && hostIds.time_ns_id !== undefined && rootIds.time_ns_id !== hostIds.time_ns_id) flags |= NEWTIME;
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
export function dumpUts(inj: TaskCalls): UtsEntry {
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

// ---------------------------------------------------------------------------------------------
// ipc: the namespace's sysctls (ipcns-var-N.img); its SysV objects are in sysv-ipc.ts. Like the
// uts names, these values exist only for members of the namespace, so the task reads and writes
// them (its /proc/sys) through injected calls.

export type IpcVarEntry = Record<string, number | bigint | number[]>;

const IPC_VARS: [field: string, file: string, wide?: boolean][] = [
  ['msg_ctlmax', 'kernel/msgmax'], ['msg_ctlmnb', 'kernel/msgmnb'], ['msg_ctlmni', 'kernel/msgmni'],
  ['shm_ctlmax', 'kernel/shmmax', true], ['shm_ctlall', 'kernel/shmall', true], ['shm_ctlmni', 'kernel/shmmni'],
  ['shm_rmid_forced', 'kernel/shm_rmid_forced'], ['mq_queues_max', 'fs/mqueue/queues_max'],
  ['mq_msg_max', 'fs/mqueue/msg_max'], ['mq_msgsize_max', 'fs/mqueue/msgsize_max'],
  ['mq_msg_default', 'fs/mqueue/msg_default'], ['mq_msgsize_default', 'fs/mqueue/msgsize_default'],
];
/** Set only when not -1 (the kernel's "next free id"). */
const IPC_NEXT_IDS: [string, string][] = [
  ['msg_next_id', 'kernel/msg_next_id'], ['sem_next_id', 'kernel/sem_next_id'], ['shm_next_id', 'kernel/shm_next_id'],
];

export function ipcVarImageName(nsId: number): string {
  return `ipcns-var-${nsId}.img`;
}

/**
 * Run `fn` with stasis's main thread in the ipc namespace of `pid` (the ipc sysctls under
 * /proc/sys are those of the reader's namespace), then back in its own.
 */
function inIpcNamespaceOf<T>(pid: number, fn: () => T): T {
  const theirs = fs.openSync(`/proc/${pid}/ns/ipc`, 'r');
  const mine = fs.openSync('/proc/thread-self/ns/ipc', 'r');
  try {
    syscall(`setns(ipc of ${pid})`, SYS.setns, theirs, CLONE.NEWIPC);
    try {
      return fn();
    } finally {
      syscall('setns(back to our ipc namespace)', SYS.setns, mine, CLONE.NEWIPC);
    }
  } finally {
    fs.closeSync(theirs);
    fs.closeSync(mine);
  }
}

/**
 * The ipc namespace's sysctls, read by stasis from inside the task's namespace (nothing is
 * opened in the task: a descriptor there would outlive a stasis that dies meanwhile).
 */
export function dumpIpc(pid: number): IpcVarEntry {
  return inIpcNamespaceOf(pid, () => {
    const read = (file: string) => fs.readFileSync(file, 'utf8').trim();
    const e: IpcVarEntry = { sem_ctls: read('/proc/sys/kernel/sem').split(/\s+/).map(Number), auto_msgmni: 0 };
    for (const [field, file, wide] of IPC_VARS) {
      const text = read(`/proc/sys/${file}`);
      e[field] = wide ? BigInt(text) : Number(text);
    }
    for (const [field, file] of IPC_NEXT_IDS) {
      const v = Number(read(`/proc/sys/${file}`));
      if (v >= 0) e[field] = v;
    }
    return e;
  });
}

/** Put the sysctls back, through the /proc/sys the task sees (before its own /proc is mounted). */
export function restoreIpc(inj: Injector, e: IpcVarEntry): void {
  const write = (file: string, value: string) => {
    const path = `/proc/sys/${file}`;
    const fd = openInTask(inj, path, O_WRONLY);
    try {
      writeAllInTask(inj, fd, Buffer.from(value), path);
    } finally {
      inj.call(SYS.close, fd);
    }
  };
  if (Array.isArray(e.sem_ctls) && e.sem_ctls.length === 4) write('kernel/sem', e.sem_ctls.join(' '));
  for (const [field, file] of [...IPC_VARS, ...IPC_NEXT_IDS]) {
    if (e[field] !== undefined) write(file, String(e[field]));
  }
}

// ---------------------------------------------------------------------------------------------
// time: timens-N.img holds the namespace's monotonic and boottime clocks at dump time (criu's
// format). On restore the new namespace gets offsets that make its clocks go on from there: the
// time the tree spent on disk does not pass for it. A time namespace takes offsets only before
// any task enters it, so it is made with unshare() in the seed (for the seed's children) and
// its offsets written before the root is cloned.

export interface TimensEntry {
  monotonic: { tv_sec: bigint | number; tv_nsec: bigint | number };
  boottime: { tv_sec: bigint | number; tv_nsec: bigint | number };
}

const NSEC = 1_000_000_000n;

export function timensImageName(nsId: number): string {
  return `timens-${nsId}.img`;
}

function hostClocks(): { monotonic: bigint; boottime: bigint } {
  return { monotonic: clockNs(CLOCK.MONOTONIC), boottime: clockNs(CLOCK.BOOTTIME) };
}

function offsetsOf(pid: number): { monotonic: bigint; boottime: bigint } {
  const text = fs.readFileSync(`/proc/${pid}/timens_offsets`, 'utf8');
  const get = (name: string) => {
    const m = new RegExp(`^${name}\\s+(-?\\d+)\\s+(-?\\d+)`, 'm').exec(text);
    return m ? BigInt(m[1]!) * NSEC + BigInt(m[2]!) : 0n;
  };
  return { monotonic: get('monotonic'), boottime: get('boottime') };
}

const ts = (ns: bigint) => ({ tv_sec: ns / NSEC, tv_nsec: ns % NSEC });

/** The clocks of process `pid`'s time namespace, now. */
export function dumpTimens(pid: number): TimensEntry {
  const off = offsetsOf(pid);
  const now = hostClocks();
  return { monotonic: ts(now.monotonic + off.monotonic), boottime: ts(now.boottime + off.boottime) };
}

/** Offsets, as /proc/PID/timens_offsets takes them, that continue the saved clocks from now. */
export function timensOffsets(e: TimensEntry): string {
  const now = hostClocks();
  const ns = (t: TimensEntry['monotonic']) => BigInt(t.tv_sec) * NSEC + BigInt(t.tv_nsec);
  const line = (name: string, off: bigint) => {
    const sec = off / NSEC;
    let nsec = off % NSEC;
    let s = sec;
    if (nsec < 0n) { nsec += NSEC; s -= 1n; }
    return `${name} ${s} ${nsec}\n`;
  };
  return line('monotonic', ns(e.monotonic) - now.monotonic) + line('boottime', ns(e.boottime) - now.boottime);
}
