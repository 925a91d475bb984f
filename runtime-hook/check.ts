// `stasis check`: each kernel feature stasis relies on, tried for real and reported.

import fs from 'node:fs';
import { SYS, xstateLayout } from '../sys/arch.js';
import { Injector } from '../sys/inject.js';
import { addressOf, kill, nativeBuffer, rawSyscall, spawnPausedSeed } from '../sys/native.js';
import { PRIVATE_DATA_QUERY, scanPages } from '../sys/pagemap.js';
import { PTRACE_O, SIGKILL, getRegset, getRseqConfiguration, seizeAndStop, setOptions, waitTask } from '../sys/ptrace.js';
import { NT } from '../sys/arch.js';
import { cgroupHierarchies } from '../cgroup/cgroups.js';

interface Check {
  name: string;
  run(seed: number): string | void;
}

const PR_SET_MM = 35;
const PR_SET_MM_MAP_SIZE = 15;

const CHECKS: Check[] = [
  { name: 'ptrace SEIZE + INTERRUPT', run: () => {} },
  { name: 'PTRACE_GETREGSET NT_X86_XSTATE', run: (seed) => `${getRegset(seed, NT.X86_XSTATE).length} bytes` },
  { name: 'XSAVE layout from /dev/cpu/0/cpuid', run: () => `xcr0 0x${xstateLayout().xcr0.toString(16)}` },
  { name: 'PTRACE_GET_RSEQ_CONFIGURATION', run: (seed) => { getRseqConfiguration(seed); } },
  { name: 'syscall injection through the vDSO', run: (seed) => {
    const inj = new Injector(seed, seed, { pin: false });
    try {
      if (inj.call(SYS.getpid) !== BigInt(seed)) throw new Error('wrong result');
    } finally {
      inj.finish();
    }
  } },
  { name: 'PAGEMAP_SCAN', run: () => { scanPages(process.pid, 0x10000n, 0x20000n, PRIVATE_DATA_QUERY); } },
  { name: 'process_vm_readv', run: (seed) => {
    const b = nativeBuffer(8);
    const local = nativeBuffer(16);
    local.writeBigUInt64LE(addressOf(b));
    local.writeBigUInt64LE(8n, 8);
    const r = rawSyscall(SYS.process_vm_readv, seed, addressOf(local), 1, addressOf(local), 1, 0);
    if (r !== 8n) throw new Error(`errno ${-r}`);
  } },
  { name: 'prctl(PR_SET_MM, PR_SET_MM_MAP)', run: () => {
    const b = nativeBuffer(4);
    const r = rawSyscall(SYS.prctl, PR_SET_MM, PR_SET_MM_MAP_SIZE, addressOf(b), 0, 0);
    if (r < 0n) throw new Error(`errno ${-r}`);
  } },
  { name: 'clone3 with set_tid (CAP_CHECKPOINT_RESTORE)', run: () => {
    const r = rawSyscall(SYS.clone3, 0, 0);
    if (r === -38n) throw new Error('no clone3');
  } },
  { name: 'pidfd_open + pidfd_getfd', run: () => {
    const fd = rawSyscall(SYS.pidfd_open, process.pid, 0);
    if (fd < 0n) throw new Error(`errno ${-fd}`);
    const dup = rawSyscall(SYS.pidfd_getfd, fd, 0, 0);
    rawSyscall(SYS.close, fd);
    if (dup < 0n) throw new Error(`errno ${-dup}`);
    rawSyscall(SYS.close, dup);
  } },
  { name: 'kcmp', run: () => {
    if (rawSyscall(SYS.kcmp, process.pid, process.pid, 0, 0, 0) !== 0n) throw new Error('unavailable');
  } },
  { name: '/proc/PID/map_files', run: () => {
    if (!fs.readdirSync('/proc/self/map_files').length) throw new Error('empty');
  } },
  // Containers.
  { name: 'CPUID run in a task (XSAVE layout inside a devices cgroup)', run: (seed) => {
    const inj = new Injector(seed, seed, { pin: false });
    try {
      return `leaf 0xd: xcr0 0x${inj.cpuid(0xd, 0)[0]!.toString(16)}`;
    } finally {
      inj.finish();
    }
  } },
  { name: 'PTRACE_O_SUSPEND_SECCOMP (tasks under seccomp filters)', run: (seed) => {
    setOptions(seed, PTRACE_O.TRACESYSGOOD | PTRACE_O.SUSPEND_SECCOMP);
    setOptions(seed, PTRACE_O.TRACESYSGOOD);
  } },
  { name: 'time namespaces (timens_offsets)', run: () => {
    if (!fs.existsSync('/proc/self/timens_offsets')) throw new Error('no /proc/self/timens_offsets');
  } },
  { name: 'cgroup freezer (freeze_cgroup)', run: () => {
    const hierarchies = cgroupHierarchies();
    if (hierarchies.some((h) => h.controllers.includes('freezer'))) return 'v1 freezer';
    if (hierarchies.some((h) => h.v2) && fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'v2 cgroup.freeze';
    throw new Error('neither a v1 freezer hierarchy nor a v2 cgroup tree is mounted');
  } },
];

export function checkKernel(out: NodeJS.WritableStream): number {
  let failed = 0;
  const seed = spawnPausedSeed();
  try {
    seizeAndStop(seed);
    for (const c of CHECKS) {
      try {
        const detail = c.run(seed);
        out.write(`ok    ${c.name}${detail ? ` (${detail})` : ''}\n`);
      } catch (e) {
        failed++;
        out.write(`FAIL  ${c.name}: ${(e as Error).message}\n`);
      }
    }
  } finally {
    kill(seed, SIGKILL);
    try { waitTask(seed, { timeoutMs: 2000 }); } catch { /* gone */ }
  }
  out.write(failed ? `${failed} feature(s) missing.\n` : 'Looks good.\n');
  return failed ? 1 : 0;
}
