// Credentials of a thread (thread_core.creds): uids, gids, groups, capability sets, securebits,
// no_new_privs. Read from /proc/PID/status and prctl; restored only where they differ from what
// the new task inherited from stasis, in the order the kernel allows (groups, then the ids with
// the NO_SETUID_FIXUP securebit so that no capability goes yet, then what needs CAP_SETPCAP,
// then the capability sets).

import { SYS } from '../sys/arch.js';
import type { Injector, Questions } from '../sys/inject.js';
import { rawSyscall } from '../sys/native.js';
import { readStatus, type ProcStatus } from '../sys/proc/index.js';

export interface CredsEntry {
  uid: number; gid: number; euid: number; egid: number; suid: number; sgid: number;
  fsuid: number; fsgid: number; cap_inh: number[]; cap_prm: number[]; cap_eff: number[];
  cap_bnd: number[]; secbits: number; groups: number[]; no_new_privs?: number; cap_amb?: number[];
}

const PR_GET_DUMPABLE = 3;
const PR_SET_DUMPABLE = 4;
const PR_GET_SECUREBITS = 27;
const PR_SET_SECUREBITS = 28;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_CAPBSET_DROP = 24;
const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_RAISE = 2;
const SECBIT_NO_SETUID_FIXUP = 1 << 2;
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
  // The thread starts with stasis's credentials (root, every capability, no securebits). Each
  // step below needs a capability that a later one may take away, hence their order: whatever
  // needs CAP_SETPCAP (securebits, the bounding set, inheritable bits beyond the bounding set)
  // comes before the capability sets are set for good, last.
  // A change of ids makes the process not dumpable (suid_dumpable); it gets back what it had.
  const dumpable = inj.callChecked(SYS.prctl, PR_GET_DUMPABLE);
  // (not called when they are what they were: a user namespace may deny setgroups)
  const cgroups = c.groups ?? [];
  if (String([...cgroups].sort()) !== String([...(now.groups ?? [])].sort())) {
    const groups = Buffer.alloc(Math.max(4, cgroups.length * 4));
    cgroups.forEach((g, i) => groups.writeUInt32LE(g, i * 4));
    inj.callChecked(SYS.setgroups, cgroups.length, inj.writeScratch(groups));
  }
  // Leaving uid 0 (or fsuid 0) clears capabilities, even the permitted ones without KEEP_CAPS;
  // with NO_SETUID_FIXUP the ids change and the capabilities stay as they are.
  const uidsChange = c.uid !== now.uid || c.euid !== now.euid || c.suid !== now.suid || c.fsuid !== now.fsuid;
  let secbits = now.secbits;
  if (uidsChange && !(secbits & SECBIT_NO_SETUID_FIXUP)) {
    secbits |= SECBIT_NO_SETUID_FIXUP;
    inj.callChecked(SYS.prctl, PR_SET_SECUREBITS, secbits);
  }
  inj.callChecked(SYS.setresgid, c.gid, c.egid, c.sgid);
  inj.call(SYS.setfsgid, c.fsgid);
  inj.callChecked(SYS.setresuid, c.uid, c.euid, c.suid);
  inj.call(SYS.setfsuid, c.fsuid);
  // The inheritable set first, while the bounding set is whole: a bit the image has there and
  // not in its bounding set (a container's process that dropped one) can only be added now.
  const inh = join(c.cap_inh);
  if (inh !== join(now.cap_inh)) capset(inj, { eff: join(now.cap_eff), prm: join(now.cap_prm), inh });
  // Ambient capabilities need theirs permitted and inheritable (both are, still) and no
  // NO_CAP_AMBIENT_RAISE securebit (set below, if the image has it).
  const amb = join(c.cap_amb);
  for (let cap = 0; cap < 64; cap++) {
    if (amb & (1n << BigInt(cap))) inj.callChecked(SYS.prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
  }
  const bnd = join(c.cap_bnd);
  for (let cap = 0; cap < 64; cap++) {
    if (!(bnd & (1n << BigInt(cap))) && join(now.cap_bnd) & (1n << BigInt(cap))) {
      inj.call(SYS.prctl, PR_CAPBSET_DROP, cap);
    }
  }
  if (c.secbits !== secbits) inj.callChecked(SYS.prctl, PR_SET_SECUREBITS, c.secbits);
  // Last: the sets only shrink (the ambient set with them, to what stays permitted and inheritable).
  capset(inj, { eff: join(c.cap_eff), prm: join(c.cap_prm), inh });
  if (c.no_new_privs) inj.callChecked(SYS.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (inj.callChecked(SYS.prctl, PR_GET_DUMPABLE) !== dumpable) inj.callChecked(SYS.prctl, PR_SET_DUMPABLE, dumpable);
}

/** capset(header{version, pid}, data[2]{effective, permitted, inheritable}) for the thread itself. */
function capset(inj: Injector, sets: { eff: bigint; prm: bigint; inh: bigint }): void {
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(LINUX_CAPABILITY_VERSION_3, 0);
  const data = Buffer.alloc(24);
  const [eff, prm, inh] = [words(sets.eff), words(sets.prm), words(sets.inh)];
  for (let i = 0; i < 2; i++) {
    data.writeUInt32LE(eff[i]!, i * 12);
    data.writeUInt32LE(prm[i]!, i * 12 + 4);
    data.writeUInt32LE(inh[i]!, i * 12 + 8);
  }
  inj.callChecked(SYS.capset, inj.writeScratch(hdr, 0), inj.writeScratch(data, 64));
}
