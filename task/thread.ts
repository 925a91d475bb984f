// Per-thread state other than registers (thread_core): robust futex list, scheduling policy and
// nice value, alternate signal stack, parent-death signal, name, rseq area, blocked mask,
// credentials. Dump and restore side by side.

import { SYS, type SyscallSpec } from '../sys/arch.js';
import type { Injector, Questions, TaskCalls } from '../sys/inject.js';
import { addressOf, cString, nativeBuffer, rawSyscall, syscall } from '../sys/native.js';
import { getRseqConfiguration } from '../sys/ptrace.js';
import { readStatus, type ProcStatus } from '../sys/proc/index.js';
import { askCreds, restoreCreds, type CredsEntry } from './creds.js';
import { dumpPendingSignals, type SignalQueueEntry } from './signals.js';
import { callAllNamed } from './errors.js';

export interface ThreadCoreEntry {
  futex_rla: bigint; futex_rla_len: number; sched_nice?: number; sched_policy?: number;
  sched_prio?: number; blk_sigset?: bigint; sas?: { ss_sp: bigint; ss_size: bigint; ss_flags: number };
  pdeath_sig?: number; signals_p?: SignalQueueEntry; creds?: CredsEntry; comm?: string;
  rseq_entry?: { rseq_abi_pointer: bigint; rseq_abi_size: number; signature: number; rseq_cs_pointer?: bigint };
  seccomp_mode?: number; seccomp_filter?: number;
}

const PR_SET_PDEATHSIG = 1;
const PR_GET_PDEATHSIG = 2;
const PR_SET_NAME = 15;
const PR_GET_NAME = 16;
/** TASK_COMM_LEN: a thread's name, with its NUL. */
const COMM_BYTES = 16;
const PR_GET_TID_ADDRESS = 40;
const PRIO_PROCESS = 0;
const SS_DISABLE = 2;

export interface DumpedThreadCore {
  core: ThreadCoreEntry;
  clearTidAddr: bigint;
  seccompMode: number;
}

/**
 * A thread's state, with what only the thread can tell (alternate signal stack, parent-death
 * signal, clear-tid address) asked through `questions` of its injector: the result is there once
 * they are run. `status` is the thread's /proc status when the caller has it (read here otherwise).
 */
export function askThreadCore(questions: Questions, tgid: number, tid: number, blocked: bigint,
  status?: ProcStatus): () => DumpedThreadCore {
  const st = status ?? readStatus(tgid, tid);
  // stack_t, int, pointer
  const sas = questions.room(24);
  const pdeath = questions.room(4);
  const tidAddr = questions.room(8);
  const name = questions.room(COMM_BYTES);
  questions.ask(SYS.sigaltstack, 0, sas.addr);
  questions.ask(SYS.prctl, PR_GET_PDEATHSIG, pdeath.addr);
  questions.ask(SYS.prctl, PR_GET_TID_ADDRESS, tidAddr.addr);
  questions.ask(SYS.prctl, PR_GET_NAME, name.addr);
  const creds = askCreds(questions, st);
  return () => {
    const ss = questions.answer(sas.offset, 24);
    return threadCore(tid, blocked, st, {
      sas: { ss_sp: ss.readBigUInt64LE(0), ss_size: ss.readBigUInt64LE(16), ss_flags: ss.readInt32LE(8) },
      pdeathSig: questions.answer(pdeath.offset, 4).readInt32LE(0),
      clearTidAddr: questions.answer(tidAddr.offset, 8).readBigUInt64LE(0),
      comm: cString(questions.answer(name.offset, COMM_BYTES)),
      creds: creds(),
    });
  };
}

/** askThreadCore() with questions of its own. */
export function dumpThreadCore(inj: TaskCalls, tgid: number, tid: number, blocked: bigint, status?: ProcStatus): DumpedThreadCore {
  const questions = inj.questions();
  const result = askThreadCore(questions, tgid, tid, blocked, status);
  questions.run();
  return result();
}

/** The rest of a thread's state: read through ptrace, /proc and syscalls about it. */
function threadCore(tid: number, blocked: bigint, st: ProcStatus,
  asked: { sas: NonNullable<ThreadCoreEntry['sas']>; pdeathSig: number; clearTidAddr: bigint; comm: string; creds: CredsEntry }): DumpedThreadCore {
  const head = nativeBuffer(16);
  syscall(`get_robust_list(${tid})`, SYS.get_robust_list, tid, addressOf(head), addressOf(head) + 8n);
  const param = nativeBuffer(8);
  syscall(`sched_getparam(${tid})`, SYS.sched_getparam, tid, addressOf(param));
  const policy = Number(syscall(`sched_getscheduler(${tid})`, SYS.sched_getscheduler, tid));
  // The raw getpriority syscall returns 20 - nice, so it is never negative.
  const prio = Number(syscall(`getpriority(${tid})`, SYS.getpriority, PRIO_PROCESS, tid));
  const rseq = getRseqConfiguration(tid);

  const core: ThreadCoreEntry = {
    futex_rla: head.readBigUInt64LE(0), futex_rla_len: Number(head.readBigUInt64LE(8)),
    sched_nice: 20 - prio, sched_policy: policy, sched_prio: param.readInt32LE(0),
    blk_sigset: blocked,
    sas: asked.sas,
    pdeath_sig: asked.pdeathSig,
    signals_p: dumpPendingSignals(tid, false),
    creds: asked.creds,
    comm: asked.comm,
  };
  if (rseq.rseqAbiSize) {
    core.rseq_entry = { rseq_abi_pointer: rseq.rseqAbiPointer, rseq_abi_size: rseq.rseqAbiSize, signature: rseq.signature };
  }
  return { core, clearTidAddr: asked.clearTidAddr, seccompMode: st.seccomp };
}

/** The thread's name (comm, at most 15 bytes). */
export function setComm(inj: Injector, comm: string): void {
  inj.callChecked(SYS.prctl, PR_SET_NAME, inj.writeScratch(Buffer.from(`${comm.slice(0, 15)}\0`)));
}

/**
 * Everything but the blocked mask and pending signals (set at the very end). `credsNow`, `commNow`:
 * the thread's credentials and name, when the caller knows them.
 */
export function restoreThreadCore(inj: Injector, t: ThreadCoreEntry, clearTidAddr: bigint, credsNow?: CredsEntry,
  commNow?: string): void {
  const tid = inj.pid;
  restoreCreds(inj, t.creds, credsNow);
  if (t.comm !== undefined && t.comm !== commNow) setComm(inj, t.comm);
  // The thread's own attributes in one go (one stop where the task has a code area).
  const calls: [string, SyscallSpec][] = [];
  if (t.futex_rla) calls.push([`robust futex list 0x${BigInt(t.futex_rla).toString(16)}`, [SYS.set_robust_list, t.futex_rla, t.futex_rla_len]]);
  calls.push([`clear-tid address 0x${clearTidAddr.toString(16)}`, [SYS.set_tid_address, clearTidAddr]]);
  if (t.sas && !(t.sas.ss_flags & SS_DISABLE)) {
    const ss = Buffer.alloc(24);
    ss.writeBigUInt64LE(BigInt(t.sas.ss_sp), 0);
    ss.writeInt32LE(t.sas.ss_flags, 8);
    ss.writeBigUInt64LE(BigInt(t.sas.ss_size), 16);
    calls.push([`alternate signal stack 0x${BigInt(t.sas.ss_sp).toString(16)}`, [SYS.sigaltstack, inj.writeScratch(ss), 0]]);
  }
  if (t.pdeath_sig) calls.push([`parent-death signal ${t.pdeath_sig}`, [SYS.prctl, PR_SET_PDEATHSIG, t.pdeath_sig]]);
  // CRIU writes an entry of zeros for a thread without an rseq area.
  if (t.rseq_entry && BigInt(t.rseq_entry.rseq_abi_pointer)) {
    const r = t.rseq_entry;
    calls.push([`rseq area 0x${BigInt(r.rseq_abi_pointer).toString(16)} (${r.rseq_abi_size} bytes)`,
      [SYS.rseq, r.rseq_abi_pointer, r.rseq_abi_size, 0, r.signature]]);
  }
  callAllNamed(inj, calls);
  if (t.sched_policy !== undefined && t.sched_policy !== 0) {
    const p = nativeBuffer(8);
    p.writeInt32LE(t.sched_prio ?? 0, 0);
    syscall(`scheduling policy ${t.sched_policy}: sched_setscheduler(${tid})`, SYS.sched_setscheduler, tid, t.sched_policy, addressOf(p));
  }
  if (t.sched_nice !== undefined && t.sched_nice !== 0) {
    if (rawSyscall(SYS.setpriority, PRIO_PROCESS, tid, t.sched_nice) < 0n) {
      throw new Error(`nice value ${t.sched_nice}: cannot be set`);
    }
  }
}
