// seccomp filters (seccomp.img, thread_core.seccomp_mode/seccomp_filter), as criu saves them:
// every BPF program once, each naming the one installed before it (`prev`), and each thread
// pointing at the newest of its chain. Podman's containers run under its default profile.
//
// Dump reads the programs with PTRACE_SECCOMP_GET_FILTER. Restore installs each thread's chain,
// oldest first, with injected seccomp() calls made while the task still has every capability;
// the restored tasks are traced with PTRACE_O_SUSPEND_SECCOMP, so the filters bind only once
// stasis lets them go (and the dump's injected calls are never filtered either).
//
// Strict mode (read, write, exit and sigreturn only; thread_core.seccomp_mode 1, no filter) is
// entered the same way, by an injected prctl(PR_SET_SECCOMP): every call the restore still makes
// in the thread afterwards (credentials, signals, unmapping stasis's pages) would kill it, but
// under PTRACE_O_SUSPEND_SECCOMP none is checked. The mode binds at the detach, so the first
// call it judges is the thread's own: the read() or write() it was in, made again.

import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import { getSeccompFilters } from '../sys/ptrace.js';
import { readStatus } from '../sys/proc/index.js';

export const SECCOMP_IMAGE = 'seccomp.img';
const MODE_STRICT = 1;
const MODE_FILTER = 2;
const SECCOMP_SET_MODE_FILTER = 1;
const PR_SET_SECCOMP = 22;
/** Install-time flags that make no sense again on restore: TSYNC, NEW_LISTENER, TSYNC_ESRCH. */
const ONE_TIME_FLAGS = 0x1 | 0x8 | 0x10;

export interface SeccompFilterEntry { filter: Uint8Array; prev?: number; flags?: number }

export class SeccompTable {
  readonly filters: SeccompFilterEntry[] = [];
  private index = new Map<string, number>();

  /** thread_core fields for a stopped thread (nothing for one without filters). */
  dumpThread(tid: number, knownMode?: number): { seccomp_mode?: number; seccomp_filter?: number } {
    const mode = knownMode ?? readStatus(tid).seccomp;
    if (mode === 0) return {};
    if (mode === MODE_STRICT) return { seccomp_mode: MODE_STRICT };
    let prev: number | undefined;
    for (const f of getSeccompFilters(tid).reverse()) {
      const key = `${prev ?? '-'}:${f.flags}:${f.insns.toString('base64')}`;
      let at = this.index.get(key);
      if (at === undefined) {
        at = this.filters.length;
        this.filters.push({ filter: f.insns, ...(prev !== undefined ? { prev } : {}), ...(f.flags ? { flags: f.flags } : {}) });
        this.index.set(key, at);
      }
      prev = at;
    }
    return prev === undefined ? {} : { seccomp_mode: MODE_FILTER, seccomp_filter: prev };
  }
}

/** Put a thread in strict mode, or install its filter chain (newest at `top`), oldest first. */
export function restoreSeccomp(inj: Injector, filters: readonly SeccompFilterEntry[], mode: number | undefined, top: number | undefined): void {
  if (!mode) return;
  if (mode === MODE_STRICT) {
    inj.callChecked(SYS.prctl, PR_SET_SECCOMP, MODE_STRICT);
    return;
  }
  if (mode !== MODE_FILTER || top === undefined) throw new Error(`seccomp mode ${mode} cannot be restored`);
  const chain: SeccompFilterEntry[] = [];
  for (let i: number | undefined = top; i !== undefined; i = filters[i]?.prev) {
    const f = filters[i];
    if (!f || chain.length > filters.length) throw new Error(`seccomp.img has no filter ${i} (or its chain loops)`);
    chain.push(f);
  }
  for (const f of chain.reverse()) {
    const prog = Buffer.alloc(16 + f.filter.length);
    const base = inj.scratch(prog.length);
    prog.writeUInt16LE(f.filter.length / 8, 0);
    prog.writeBigUInt64LE(base + 16n, 8);
    Buffer.from(f.filter).copy(prog, 16);
    inj.writeScratch(prog);
    inj.callChecked(SYS.seccomp, SECCOMP_SET_MODE_FILTER, (f.flags ?? 0) & ~ONE_TIME_FLAGS, base);
  }
}
