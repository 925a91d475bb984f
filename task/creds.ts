// Credentials of a thread (thread_core.creds): uids, gids, groups, capability sets, securebits,
// no_new_privs. Read from /proc/PID/status and prctl; restored only where they differ from what
// the new task inherited from stasis, in the order the kernel allows (groups and gids while still
// privileged, uids with KEEPCAPS, then the capability sets).

import { SYS } from '../sys/arch.js';
import type { Injector, Questions } from '../sys/inject.js';
import { rawSyscall } from '../sys/native.js';
import { readStatus, type ProcStatus } from '../sys/proc/index.js';

export interface CredsEntry {
  uid: number; gid: number; euid: number; egid: number; suid: number; sgid: number;
  fsuid: number; fsgid: number; cap_inh: number[]; cap_prm: number[]; cap_eff: number[];
  cap_bnd: number[]; secbits: number; groups: number[]; no_new_privs?: number; cap_amb?: number[];
}

const PR_GET_SECUREBITS = 27;
const PR_SET_SECUREBITS = 28;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_CAPBSET_DROP = 24;
const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_RAISE = 2;
const SECBIT_KEEP_CAPS = 1 << 4;
const LINUX_CAPABILITY_VERSION_3 = 0x20080522;

const words = (v: bigint): number[] => [Number(v & 0xffffffffn), Number(v >> 32n)];
const join = (w: readonly number[] | undefined): bigint => BigInt(w?.[0] ?? 0) | (BigInt(w?.[1] ?? 0) << 32n);

export function credsFromStatus(s: ProcStatus, secbits: number): CredsEntry {
  return {
    uid: s.uid[0], euid: s.uid[1], suid: s.uid[2], fsuid: s.uid[3],
    gid: s.gid[0], egid: s.gid[1], sgid: s.gid[2], fsgid: s.gid[3],
    cap_inh: words(s.capInh), cap_prm: words(s.capPrm), cap_eff: words(s.capEff),
    cap_bnd: words(s.capBnd), secbits, groups: [...s.groups],
    no_new_privs: s.noNewPrivs ? 1 : 0, cap_amb: words(s.capAmb),
  };
}

/**
 * A thread's credentials: `status` is its /proc status, read by the caller; the securebits are
 * asked through `questions` of its injector (the result is there once they are run).
 */
export function askCreds(questions: Questions, status: ProcStatus): () => CredsEntry {
  const secbits = questions.ask(SYS.prctl, PR_GET_SECUREBITS);
  return () => credsFromStatus(status, Number(questions.result(secbits)));
}

function same(a: CredsEntry, b: CredsEntry): boolean {
  return JSON.stringify(normal(a)) === JSON.stringify(normal(b));
}
function normal(c: CredsEntry): unknown {
  return [c.uid, c.gid, c.euid, c.egid, c.suid, c.sgid, c.fsuid, c.fsgid, join(c.cap_inh),
    join(c.cap_prm), join(c.cap_eff), join(c.cap_bnd), c.secbits, [...(c.groups ?? [])].sort(),
    c.no_new_privs ?? 0, join(c.cap_amb)].map(String);
}

/** stasis's own credentials (those of every task it creates, until they are restored). */
export function ownCreds(): CredsEntry {
  return credsFromStatus(readStatus('self'), Number(rawSyscall(SYS.prctl, PR_GET_SECUREBITS)));
}

/** `now`: the thread's credentials when the caller knows them (ownCreds() for a new task). */
export function restoreCreds(inj: Injector, c: CredsEntry | undefined, now?: CredsEntry): void {
  if (!c) return;
  now ??= credsFromStatus(readStatus(inj.pid), Number(inj.callChecked(SYS.prctl, PR_GET_SECUREBITS)));
  if (same(now, c)) return;
  // Bounding set first, while we still hold CAP_SETPCAP.
  const bnd = join(c.cap_bnd);
  for (let cap = 0; cap < 64; cap++) {
    if (!(bnd & (1n << BigInt(cap))) && join(now.cap_bnd) & (1n << BigInt(cap))) {
      inj.call(SYS.prctl, PR_CAPBSET_DROP, cap);
    }
  }
  const cgroups = c.groups ?? [];
  const groups = Buffer.alloc(Math.max(4, cgroups.length * 4));
  cgroups.forEach((g, i) => groups.writeUInt32LE(g, i * 4));
  inj.callChecked(SYS.setgroups, cgroups.length, inj.writeScratch(groups));
  // Securebits need CAP_SETPCAP, which capset() below may drop: set them now, with keep-caps
  // added only while the uids change (and cleared after, if the image has it clear).
  const uidsChange = c.uid !== now.uid || c.euid !== now.euid || c.suid !== now.suid;
  const secbits = uidsChange ? c.secbits | SECBIT_KEEP_CAPS : c.secbits;
  if (secbits !== now.secbits) inj.callChecked(SYS.prctl, PR_SET_SECUREBITS, secbits);
  inj.callChecked(SYS.setresgid, c.gid, c.egid, c.sgid);
  inj.call(SYS.setfsgid, c.fsgid);
  inj.callChecked(SYS.setresuid, c.uid, c.euid, c.suid);
  inj.call(SYS.setfsuid, c.fsuid);
  // capset(header{version, pid}, data[2]{effective, permitted, inheritable})
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(LINUX_CAPABILITY_VERSION_3, 0);
  const data = Buffer.alloc(24);
  for (let i = 0; i < 2; i++) {
    data.writeUInt32LE(c.cap_eff[i] ?? 0, i * 12);
    data.writeUInt32LE(c.cap_prm[i] ?? 0, i * 12 + 4);
    data.writeUInt32LE(c.cap_inh[i] ?? 0, i * 12 + 8);
  }
  const h = inj.writeScratch(hdr, 0);
  const d = inj.writeScratch(data, 64);
  inj.callChecked(SYS.capset, h, d);
  const amb = join(c.cap_amb);
  for (let cap = 0; cap < 64; cap++) {
    if (amb & (1n << BigInt(cap))) inj.callChecked(SYS.prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
  }
  if (secbits !== c.secbits) inj.callChecked(SYS.prctl, PR_SET_SECUREBITS, c.secbits);
  if (c.no_new_privs) inj.callChecked(SYS.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}
