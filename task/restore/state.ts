// What one restore shares between its phases: the options and images, every task made so far
// with its injector, and stasis's own state the tasks start from (each is a copy of stasis until
// restored).

import { giveTaskFd } from '../../sys/pass-fd.js';
import type { CredsEntry } from '../creds.js';
import { RestoreLock } from '../../net-ns/network-lock.js';
import { NetworkWatchdog } from '../../net-ns/watchdog.js';
import fs from 'node:fs';
import { MemfdInodes } from '../../files/memfd.js';
import { openInTask } from '../../files/reg.js';
import { SYS } from '../../sys/arch.js';
import { Injector, getAffinity } from '../../sys/inject.js';
import { kill, rawSyscall } from '../../sys/native.js';
import { SIGKILL, waitTask } from '../../sys/ptrace.js';
import { readOomScoreAdj, readPersonality, readStatus, type VmaRange } from '../../sys/proc/index.js';
import { O_RDONLY } from '../../sys/fcntl.js';
import { ownCreds } from '../creds.js';
import type { FsEntry } from '../fs.js';
import type { CowCounts } from '../pages.js';
import type { RestoreOptions } from '../restore.js';
import type { LoadedImages, ProcessImages } from './images.js';

/** A task being restored: its injector, and what restore has to remember about it. */
export interface Restoring {
  p: ProcessImages;
  /** The task's PID as stasis sees it (p.pid is the one in the tree's own pid namespace). */
  hpid: number;
  inj: Injector;
  threads: Map<number, Injector>;
  pidfds: Map<number, number>;
  /** Its descriptor table is restored already (before its children were cloned). */
  filesDone?: boolean;
  /** What of its fs image it has already (its cwd, set before its children were cloned). */
  fsHas: Partial<FsEntry>;
  /** Its address space once restored, for the children cloned from it (see MappedSpace.layout). */
  layout?: readonly VmaRange[];
  /** Its process group and its main thread's name as they stand (known from how it was made). */
  pgidNow?: number;
  commNow?: string;
  /** Its credentials once it entered a user namespace of the tree's (stasis's until then). */
  credsNow?: CredsEntry;
  /** Born in its user namespace (the container's, owning its pid namespace): its threads get their TIDs by set_tid. */
  bornInUserNs?: boolean;
}

export class RestoreRun {
  /**
   * The network locked while the connections are rebuilt (namespaces.ts takes the lock), with
   * the dump's lock it lifts.
   */
  readonly netLock: RestoreLock;

  /** The processes being restored, by their PID in the image. */
  readonly tasks = new Map<number, Restoring>();
  /** Every task created (processes, helpers, threads), as stasis sees it: killed if the restore fails. */
  readonly created: number[] = [];
  /** Pages filled so far. */
  pages = 0;
  /**
   * Pages of children compared with what they held from their restored parent, and of those
   * the ones equal to it, left shared copy-on-write (stats-restore's pages_compared and
   * pages_skipped_cow).
   */
  readonly cow: CowCounts = { compared: 0, skipped: 0 };
  /** The memfd inodes (and shared anonymous memory) of the tree, each made once. */
  readonly memfds = new MemfdInodes();
  /**
   * A task in another pid namespace cannot name stasis: it inherits a pidfd of stasis instead
   * (the seed opens it; see namespaces.ts).
   */
  stasisPidfd: number | undefined;
  readonly t0 = performance.now();
  /** When the last process of the tree was created (forking_time). */
  treeMadeAt?: number;
  /**
   * Stasis's CPU mask: every injected syscall is a round trip between stasis and a task, with
   * both on one CPU they cost a quarter. Tasks created inherit stasis's pin; they get this back
   * before they go.
   */
  readonly affinity = getAffinity(0);
  /** Stasis's credentials, personality, OOM score and umask: every task's until restored. */
  readonly own = {
    creds: ownCreds(), personality: readPersonality('self'), oomScoreAdj: readOomScoreAdj('self'), umask: readStatus('self').umask,
  };
  readonly ownSid = Number(rawSyscall(SYS.getsid, 0));
  readonly log: (msg: string) => void;

  constructor(readonly opts: RestoreOptions, readonly img: LoadedImages) {
    this.log = opts.log ?? (() => {});
    // (its watchdog process starts with the first lock it hears of: only for a dump with connections)
    this.netLock = new RestoreLock(img.dumpLock, new NetworkWatchdog());
  }

  /** A regular file of files.img (its `reg` part). */
  regFile(id: number): Record<string, unknown> {
    return this.img.files.get(id)!.reg as Record<string, unknown>;
  }

  /**
   * A file of the dump opened in a task. A task in another mount namespace cannot see the
   * images: stasis opens them, and the task takes a copy of the descriptor through its pidfd.
   */
  openImage(inj: Injector, file: string): number {
    if (this.stasisPidfd === undefined) return openInTask(inj, file, O_RDONLY);
    const own = fs.openSync(file, 'r');
    try {
      return this.giveFd(inj, own);
    } finally {
      fs.closeSync(own);
    }
  }

  /**
   * A copy of stasis's descriptor `fd` in the task (pidfd_getfd); its number there. A task in a
   * user namespace of its own may not take it so (EPERM): it is sent one (sys/pass-fd.ts).
   */
  giveFd(inj: Injector, fd: number): number {
    if (this.stasisPidfd !== undefined) return giveTaskFd(inj, this.stasisPidfd, fd);
    const pidfd = Number(inj.callChecked(SYS.pidfd_open, process.pid, 0));
    try {
      return giveTaskFd(inj, pidfd, fd);
    } finally {
      inj.call(SYS.close, pidfd);
    }
  }

  /** A failed restore leaves nothing: every task created is killed and reaped. */
  killCreated(): void {
    for (const pid of this.created) {
      try {
        kill(pid, SIGKILL);
      } catch {
        // gone
      }
    }
    // Collected children first: a pid namespace's init does not finish dying until every other
    // task of it is reaped, and those are ours to reap (traced).
    for (const pid of [...this.created].reverse()) {
      try {
        waitTask(pid, { timeoutMs: 5000 });
      } catch {
        // reaped
      }
    }
  }
}
