// Entering another process's namespace from stasis's main thread, for a moment. setns() changes
// only the calling thread, and ipc and network namespaces may be entered by a threaded process:
// what the thread does meanwhile (SysV IPC calls, /proc/sysvipc, a netlink socket it opens)
// belongs to that namespace. The thread always comes back to its own.

import fs from 'node:fs';
import { SYS } from './arch.js';
import { syscall } from './native.js';

const NSTYPE = { ipc: 0x08000000, net: 0x40000000 } as const;

export function inNamespaceOf<T>(pid: number, kind: keyof typeof NSTYPE, fn: () => T): T {
  const own = fs.openSync(`/proc/thread-self/ns/${kind}`, 'r');
  const theirs = fs.openSync(`/proc/${pid}/ns/${kind}`, 'r');
  try {
    syscall(`setns(${kind} namespace of ${pid})`, SYS.setns, theirs, NSTYPE[kind]);
    try {
      return fn();
    } finally {
      syscall(`setns(back to stasis's ${kind} namespace)`, SYS.setns, own, NSTYPE[kind]);
    }
  } finally {
    fs.closeSync(theirs);
    fs.closeSync(own);
  }
}

/** Whether task `pid` is in stasis's own namespace of `kind`. */
export function sameNamespace(pid: number, kind: keyof typeof NSTYPE): boolean {
  return fs.statSync(`/proc/thread-self/ns/${kind}`).ino === fs.statSync(`/proc/${pid}/ns/${kind}`).ino;
}
