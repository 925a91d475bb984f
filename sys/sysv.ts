// SysV IPC objects (shared memory segments, semaphore sets, message queues) as stasis itself
// reaches them: its main thread enters the ipc namespace that holds them (setns.ts), works with
// the ordinary syscalls, and goes back. The listing comes from /proc/sysvipc/*, which shows the reader's namespace.
//
// Layouts are x86_64's (asm-generic ipc64_perm, shmid64_ds, semid64_ds, msqid64_ds): 64-bit
// kernels take the *64_ds structures without the IPC_64 flag.

import fs from 'node:fs';
import { PAGE_SIZE, SYS } from './arch.js';
import { isErrorResult } from './errno.js';
import { addressOf, nativeBuffer, rawSyscall, syscall } from './native.js';
import { readRanges, writeMemory } from './mem.js';
import { inNamespaceOf } from './setns.js';

export const IPC_CREAT = 0o1000;
export const IPC_EXCL = 0o2000;
export const IPC_NOWAIT = 0o4000;
const IPC_RMID = 0;
const IPC_SET = 1;
const IPC_STAT = 2;
const SHM_RDONLY = 0o10000;
const SHM_LOCK = 11;
/** shm_perm.mode bits the kernel adds: marked for removal, locked in memory. */
export const SHM_DEST = 0o1000;
export const SHM_LOCKED = 0o2000;
const GETALL = 13;
const SETALL = 17;
const MSG_COPY = 0o40000;

const PERM_SIZE = 48;
const SHMID_DS_SIZE = 112;
const SEMID_DS_SIZE = 104;
const MSQID_DS_SIZE = 120;

export type SysvKind = 'shm' | 'sem' | 'msg';

/** One line of /proc/sysvipc/KIND, by column name (key, shmid/semid/msqid, perms, uid, ...). */
export type SysvListing = Record<string, string>;

/** The objects of one kind in the namespace the calling thread is in. */
export function listSysv(kind: SysvKind): SysvListing[] {
  const [head, ...rows] = fs.readFileSync(`/proc/sysvipc/${kind}`, 'utf8').split('\n').filter((l) => l.trim());
  const names = head!.trim().split(/\s+/);
  return rows.map((r) => {
    const cols = r.trim().split(/\s+/);
    return Object.fromEntries(names.map((n, i) => [n, cols[i] ?? '']));
  });
}

/** Run `fn` with the calling (main) thread in the ipc namespace of process `pid`. */
export function inIpcNamespaceOf<T>(pid: number, fn: () => T): T {
  return inNamespaceOf(pid, 'ipc', fn);
}

/** Set the id the next object of `kind` gets (kernel/KIND_next_id of the current namespace). */
export function setNextId(kind: SysvKind, id: number): void {
  fs.writeFileSync(`/proc/sys/kernel/${kind}_next_id`, String(id));
}

/**
 * Create an object as its creator did: cuid/cgid are the creator's effective ids, which no
 * IPC_SET changes afterwards. Only this thread's ids switch (raw setresuid/setresgid act per
 * thread), and they are switched back before returning.
 */
export function asCreator<T>(cuid: number, cgid: number, fn: () => T): T {
  if (cuid === 0 && cgid === 0) return fn();
  syscall(`setresgid(-1, ${cgid}, -1)`, SYS.setresgid, -1, cgid, -1);
  try {
    syscall(`setresuid(-1, ${cuid}, -1)`, SYS.setresuid, -1, cuid, -1);
    try {
      return fn();
    } finally {
      syscall('setresuid(-1, 0, -1)', SYS.setresuid, -1, 0, -1);
    }
  } finally {
    syscall('setresgid(-1, 0, -1)', SYS.setresgid, -1, 0, -1);
  }
}

export interface IpcPerm {
  key: number;
  uid: number;
  gid: number;
  cuid: number;
  cgid: number;
  mode: number;
}

function readPerm(b: Buffer): IpcPerm {
  return {
    key: b.readInt32LE(0) >>> 0, uid: b.readUInt32LE(4), gid: b.readUInt32LE(8),
    cuid: b.readUInt32LE(12), cgid: b.readUInt32LE(16), mode: b.readUInt16LE(20),
  };
}

const CTL = {
  shm: { nr: SYS.shmctl, dsSize: SHMID_DS_SIZE },
  sem: { nr: SYS.semctl, dsSize: SEMID_DS_SIZE },
  msg: { nr: SYS.msgctl, dsSize: MSQID_DS_SIZE },
} as const;
const CMD_NAME: Record<number, string> = { [IPC_SET]: 'IPC_SET', [IPC_STAT]: 'IPC_STAT', [SHM_LOCK]: 'SHM_LOCK', [GETALL]: 'GETALL', [SETALL]: 'SETALL' };

/** shmctl / semctl (which takes a semaphore number before the command) / msgctl. */
function ctl(kind: SysvKind, id: number, cmd: number, arg: bigint | number = 0): bigint {
  const what = `${kind}ctl(${id}, ${CMD_NAME[cmd] ?? cmd})`;
  return kind === 'sem' ? syscall(what, CTL.sem.nr, id, 0, cmd, arg) : syscall(what, CTL[kind].nr, id, cmd, arg);
}

/** The object's *id64_ds, as IPC_STAT gives it. */
function stat(kind: SysvKind, id: number): Buffer {
  const ds = nativeBuffer(CTL[kind].dsSize);
  ctl(kind, id, IPC_STAT, addressOf(ds));
  return ds;
}

/**
 * IPC_SET of owner and permission bits, the rest of the structure as IPC_STAT gave it but for
 * what `also` changes (a queue's byte limit); a segment marked SHM_LOCKED is locked again.
 */
export function setOwner(kind: SysvKind, id: number, perm: Pick<IpcPerm, 'uid' | 'gid' | 'mode'>,
  also?: (ds: Buffer) => void): void {
  const ds = stat(kind, id);
  ds.writeUInt32LE(perm.uid, 4);
  ds.writeUInt32LE(perm.gid, 8);
  ds.writeUInt16LE(perm.mode & 0o777, 20);
  also?.(ds);
  ctl(kind, id, IPC_SET, addressOf(ds));
  if (kind === 'shm' && perm.mode & SHM_LOCKED) ctl(kind, id, SHM_LOCK);
}

// ---- shared memory ------------------------------------------------------------------------

export function shmStat(id: number): IpcPerm & { size: number; nattch: number } {
  const ds = stat('shm', id);
  return { ...readPerm(ds), size: Number(ds.readBigUInt64LE(PERM_SIZE)), nattch: Number(ds.readBigUInt64LE(88)) };
}

function attach(id: number, readOnly: boolean): bigint {
  return syscall(`shmat(${id})`, SYS.shmat, id, 0, readOnly ? SHM_RDONLY : 0);
}

function detach(at: bigint): void {
  syscall('shmdt', SYS.shmdt, at);
}

/** Whether any swap is in use: then pages of a segment may hold data without being resident. */
function swapActive(): boolean {
  try {
    return fs.readFileSync('/proc/swaps', 'utf8').trim().split('\n').length > 1;
  } catch {
    return true;
  }
}

/**
 * The contents of segment `id` (`size` bytes). Pages the segment never had stay zero without
 * being read (reading a hole of shared memory would allocate it); with swap active every page
 * is read, as mincore cannot see swapped-out pages, and so is every page of a segment of huge
 * pages (`hugePages`), whose pages mincore sees only where the attachment touched them.
 */
export function shmRead(id: number, size: number, hugePages = false): Buffer {
  const out = nativeBuffer(size);
  if (size === 0) return out;
  const at = attach(id, true);
  try {
    const pages = Math.ceil(size / PAGE_SIZE);
    const vec = nativeBuffer(pages);
    const all = hugePages || swapActive() || isErrorResult(rawSyscall(SYS.mincore, at, pages * PAGE_SIZE, addressOf(vec)));
    for (let p = 0; p < pages;) {
      if (!all && !(vec[p]! & 1)) {
        p++;
        continue;
      }
      let q = p + 1;
      while (q < pages && (all || vec[q]! & 1)) q++;
      const from = p * PAGE_SIZE;
      const len = Math.min(q * PAGE_SIZE, size) - from;
      if (readRanges(process.pid, [{ addr: at + BigInt(from), len }], out, from) !== len) {
        throw new Error(`SysV shared memory ${id}: cannot read ${len} bytes at offset ${from}`);
      }
      p = q;
    }
  } finally {
    detach(at);
  }
  return out;
}

/** A new segment; its id is what setNextId() chose. */
/** A segment made under `key`; `huge`: SHM_HUGETLB and the huge page size bits, for one of huge pages. */
export function shmCreate(key: number, size: number, mode: number, huge = 0): number {
  return Number(syscall(`shmget(0x${key.toString(16)}, ${size})`, SYS.shmget, key, size, IPC_CREAT | IPC_EXCL | (mode & 0o777) | huge));
}

const HUGETLBFS_MAGIC = 0x958458f6;

/** The huge page size of a segment of huge pages (SHM_HUGETLB), undefined for one of ordinary pages. */
export function shmHugePageSize(id: number): number | undefined {
  const at = attach(id, true);
  try {
    // The attachment's file is on hugetlbfs for such a segment; the filesystem's block size is the page size.
    const start = `${at.toString(16)}-`;
    const range = fs.readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => l.startsWith(start))?.split(' ')[0];
    if (!range) throw new Error(`SysV shared memory ${id}: its attachment is not in /proc/self/maps`);
    const st = fs.statfsSync(`/proc/self/map_files/${range}`);
    return st.type === HUGETLBFS_MAGIC ? st.bsize : undefined;
  } finally {
    detach(at);
  }
}

/** Fill a segment, writing only the pages that are not all zero (the rest stay holes). */
export function shmWrite(id: number, data: Buffer): void {
  const zero = Buffer.alloc(PAGE_SIZE);
  let at: bigint | undefined;
  try {
    for (let off = 0; off < data.length; off += PAGE_SIZE) {
      const page = data.subarray(off, Math.min(off + PAGE_SIZE, data.length));
      if (page.equals(zero.subarray(0, page.length))) continue;
      at ??= attach(id, false);
      writeMemory(process.pid, at + BigInt(off), page);
    }
  } finally {
    if (at !== undefined) detach(at);
  }
}

// ---- semaphores ---------------------------------------------------------------------------

export function semStat(id: number): IpcPerm & { nsems: number } {
  const ds = stat('sem', id);
  return { ...readPerm(ds), nsems: Number(ds.readBigUInt64LE(80)) };
}

export function semValues(id: number, nsems: number): number[] {
  const vals = nativeBuffer(Math.max(nsems, 1) * 2);
  ctl('sem', id, GETALL, addressOf(vals));
  return Array.from({ length: nsems }, (_, i) => vals.readUInt16LE(i * 2));
}

export function semCreate(key: number, nsems: number, mode: number): number {
  return Number(syscall(`semget(0x${key.toString(16)}, ${nsems})`, SYS.semget, key, nsems, IPC_CREAT | IPC_EXCL | (mode & 0o777)));
}

export function semSetValues(id: number, values: readonly number[]): void {
  if (!values.length) return;
  const vals = nativeBuffer(values.length * 2);
  values.forEach((v, i) => vals.writeUInt16LE(v, i * 2));
  ctl('sem', id, SETALL, addressOf(vals));
}

// ---- message queues -----------------------------------------------------------------------

export function msgStat(id: number): IpcPerm & { qbytes: number; qnum: number; cbytes: number } {
  const ds = stat('msg', id);
  return {
    ...readPerm(ds), cbytes: Number(ds.readBigUInt64LE(72)), qnum: Number(ds.readBigUInt64LE(80)),
    qbytes: Number(ds.readBigUInt64LE(88)),
  };
}

export interface QueuedMessage {
  mtype: bigint;
  data: Buffer;
}

/** Copies of the `qnum` queued messages, in order, without taking them off the queue (MSG_COPY). */
export function msgPeekAll(id: number, qnum: number, maxSize: number): QueuedMessage[] {
  const buf = nativeBuffer(8 + maxSize);
  const out: QueuedMessage[] = [];
  for (let i = 0; i < qnum; i++) {
    const n = syscall(`msgrcv(${id}, copy of message ${i})`, SYS.msgrcv, id, addressOf(buf), maxSize, i,
      IPC_NOWAIT | MSG_COPY);
    out.push({ mtype: buf.readBigInt64LE(0), data: Buffer.from(buf.subarray(8, 8 + Number(n))) });
  }
  return out;
}

export function msgCreate(key: number, mode: number): number {
  return Number(syscall(`msgget(0x${key.toString(16)})`, SYS.msgget, key, IPC_CREAT | IPC_EXCL | (mode & 0o777)));
}

export function msgSend(id: number, m: QueuedMessage): void {
  const buf = nativeBuffer(8 + m.data.length);
  buf.writeBigInt64LE(m.mtype, 0);
  m.data.copy(buf, 8);
  syscall(`msgsnd(${id}, type ${m.mtype}, ${m.data.length} bytes)`, SYS.msgsnd, id, addressOf(buf), m.data.length, IPC_NOWAIT);
}

/** A queue's own byte limit (msg_qbytes), for setOwner. */
export function withQueueBytes(qbytes: number): (ds: Buffer) => void {
  return (ds) => ds.writeBigUInt64LE(BigInt(qbytes), 88);
}
