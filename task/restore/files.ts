// Descriptor tables. Outside a pid namespace of the tree's own, each process gets its table
// right after its memory, before its children are cloned: a child then inherits what it shares
// with its parent (same number, same description) and only closes and opens the rest. In a pid
// namespace tasks name stasis through a pidfd, and all tables wait until every process exists.
// So does the table of a task with files on the mounts of another mount namespace of the tree
// (one nested in it, or the tree's own seen from a nested one): they are opened through a task
// of that namespace (/proc/PID/root), which must exist.
// A description shared between processes is opened once and copied to the others (pidfd_getfd);
// what each kind of file needs is in files/ (files/fdtable.ts dispatches).

import { giveTaskFd } from '../../sys/pass-fd.js';
import { closeStreams, goLive, type PendingStream } from '../../files/tcp-stream.js';
import fs from 'node:fs';
import { applying } from '../errors.js';
import { SYS, type SyscallSpec } from '../../sys/arch.js';
import type { Injector } from '../../sys/inject.js';
import { F_SETFD } from '../../sys/fcntl.js';
import { moveAbove, restoreFdTable, type FdinfoEntry } from '../../files/fdtable.js';
import type { MountRoot, OrphanPts } from '../../files/kind.js';
import type { ProcessImages } from './images.js';
import type { Plan } from './plan.js';
import type { RestoreRun, Restoring } from './state.js';

const CLOSE_RANGE_ALL = 0xffffffff;
const FD_CLOEXEC = 1;

export class TreeFiles {
  /** Descriptions opened so far: by file id, the task (image PID) holding one and its number. */
  private readonly openedElsewhere = new Map<number, { pid: number; fd: number }>();
  /** Descriptors opened only for others to copy, closed once every table is done. */
  private readonly spares: { t: Restoring; fd: number }[] = [];
  /** What a kind of file does once every table exists (a socket connecting to another's). */
  private readonly afterTables: (() => void)[] = [];
  /** What names a thread (an fd's F_OWNER_TID owner): done once the threads exist. */
  private readonly afterThreads: (() => void)[] = [];
  /** Terminals made anew whose master was outside the dump (criu's orphan_pts_master). */
  private readonly orphanPts: OrphanPts = new Map();

  /** Established connections, made in repair mode; live just before the tree runs. */
  readonly tcp: { close: boolean; pending: PendingStream[] };

  constructor(private readonly run: RestoreRun, private readonly plan: Plan) {
    this.tcp = { close: run.opts.tcpClose ?? false, pending: [] };
  }

  /** Whether tables wait until every process exists (the tree has its own pid namespace). */
  get deferred(): boolean {
    return this.run.stasisPidfd !== undefined;
  }

  /**
   * The mount namespace of mount `mntId` of the dump: a nested one whose image has it, else the
   * tree's own (the root's).
   */
  private mountNsOf(mntId: number): number | undefined {
    const { img } = this.run;
    for (const [ns, entries] of img.nestedMounts) if (entries.some((e) => e.mnt_id === mntId)) return ns;
    return img.mntNsOf.get(img.procs[0]!.pid);
  }

  /** RestoreFilesTask.mountRoot for task `t`: through the first task of the mount's namespace. */
  private mountRoot(t: Restoring, mntId: number): MountRoot | undefined {
    const { img } = this.run;
    const ns = img.nestedMounts.size ? this.mountNsOf(mntId) : undefined;
    if (ns === undefined || ns === img.mntNsOf.get(t.p.pid)) return undefined;
    const there = [...this.run.tasks.values()].find((x) => img.mntNsOf.get(x.p.pid) === ns);
    if (!there) throw new Error(`mount ${mntId} is in a mount namespace none of whose tasks exists yet`);
    return { task: `/proc/${there.p.pid}/root`, stasis: `/proc/${there.hpid}/root` };
  }

  /** Whether task `t`'s table opens files through another mount namespace (it waits until every task exists). */
  waits(t: Restoring): boolean {
    const { img } = this.run;
    if (!img.nestedMounts.size) return false;
    const own = img.mntNsOf.get(t.p.pid);
    const other = (mntId: unknown) => mntId !== undefined && Number(mntId) > 0 && this.mountNsOf(Number(mntId)) !== own;
    return (t.p.fdinfos ?? []).some((f) => {
      const file = img.files.get(f.id);
      type Marks = { mark?: { me?: { mnt_id?: number }; ie?: { f_handle?: { mnt_id?: number } } }[] };
      return other((file?.reg as Record<string, unknown> | undefined)?.mnt_id)
        || ((file?.ify as { wd?: { f_handle?: { mnt_id?: number } }[] } | undefined)?.wd ?? []).some((w) => other(w.f_handle?.mnt_id))
        || ((file?.ffy as Marks | undefined)?.mark ?? []).some((m) => other(m.me?.mnt_id ?? m.ie?.f_handle?.mnt_id));
    });
  }

  /** Process `t`'s descriptor table; `parent`, the restored process it was cloned from. */
  restore(t: Restoring, parent?: ProcessImages): void {
    const { opts, img } = this.run;
    const stasisPidfd = this.run.stasisPidfd;
    applying(t.p.fdinfoFile!, `task ${t.p.pid}`, () => {
      const { inj, p } = t;
      const floor = p.fdinfos!.reduce((m, f) => Math.max(m, f.fd + 1), 3);
      const kept = parent ? inheritedFds(p.fdinfos!, parent.fdinfos!) : new Map<number, number>();
      if (stasisPidfd === undefined) {
        closeAllBut(inj, kept);
        // fdinfo flags hold FD_CLOEXEC (1), which a fork copies with each descriptor.
        for (const f of p.fdinfos!) {
          const theirs = kept.has(f.fd) && parent!.fdinfos!.find((x) => x.fd === f.fd)!;
          if (theirs && (theirs.flags & FD_CLOEXEC) !== (f.flags & FD_CLOEXEC)) inj.callChecked(SYS.fcntl, f.fd, F_SETFD, f.flags & FD_CLOEXEC);
        }
      } else {
        if (stasisPidfd > 0) inj.callChecked(SYS.close_range, 0, stasisPidfd - 1, 0);
        inj.callChecked(SYS.close_range, stasisPidfd + 1, CLOSE_RANGE_ALL, 0);
        t.pidfds.set(process.pid, moveAbove(inj, stasisPidfd, floor));
      }
      const pidfdOf = (pid: number) => {
        let pfd = t.pidfds.get(pid);
        if (pfd === undefined) {
          pfd = moveAbove(inj, Number(inj.callChecked(SYS.pidfd_open, pid, 0)), floor);
          t.pidfds.set(pid, pfd);
        }
        return pfd;
      };
      const { placed, spare } = restoreFdTable(t.hpid, inj, p.fdinfos!, img.files, {
        inherited: (key) => this.plan.given.fds.get(key),
        shellJob: opts.shellJob, orphanPts: opts.orphanPtsMaster ? this.orphanPts : undefined,
        // (a task in a user namespace of its own may not take it from stasis: it is sent one)
        importFd: (fd) => giveTaskFd(inj, pidfdOf(process.pid), fd),
        importFromTask: (pid, fd) => Number(inj.callChecked(SYS.pidfd_getfd, pidfdOf(pid), fd, 0)),
        openedElsewhere: (id) => this.openedElsewhere.get(id),
        imageEntries: (name) => img.extraImage(name),
        imagePath: (name) => img.file(name),
        later: (fn) => this.afterTables.push(() => applying(p.fdinfoFile!, `task ${p.pid}`, fn)),
        afterThreads: (fn) => this.afterThreads.push(() => applying(p.fdinfoFile!, `task ${p.pid}`, fn)),
        kept, imagePid: p.pid, memfds: this.run.memfds, mountRoot: (mntId) => this.mountRoot(t, mntId),
        mountPoint: (mntId) => [img.mounts ?? [], ...img.nestedMounts.values()].flat().find((m) => m.mnt_id === mntId)?.mountpoint,
        tcp: this.run.opts.tcpEstablished || this.run.opts.tcpClose ? this.tcp : undefined,
      });
      for (const [id, fd] of [...placed, ...spare]) if (!this.openedElsewhere.has(id)) this.openedElsewhere.set(id, { pid: p.pid, fd });
      for (const fd of spare.values()) this.spares.push({ t, fd });
      t.filesDone = true;
    });
  }

  /** Once every table exists: what waited for them, spares closed. */
  finish(): void {
    for (const fn of this.afterTables) fn();
    for (const { t, fd } of this.spares) t.inj.call(SYS.close, fd);
  }

  /** Once every thread exists: what names one. */
  threadsMade(): void {
    for (const fn of this.afterThreads) fn();
  }

  /** Hands the masters of terminals made anew to the caller (or not: see release). */
  handOverOrphanPts(): void {
    for (const { master } of this.orphanPts.values()) this.run.opts.orphanPtsMaster!(master);
  }

  /** Each task's pidfds (of stasis and of other tasks), closed once nothing more is copied. */
  closePidfds(): void {
    for (const t of this.run.tasks.values()) for (const pfd of t.pidfds.values()) t.inj.call(SYS.close, pfd);
  }

  /**
   * The tree is about to run: its connections leave repair mode (sending what they had not
   * sent yet), and the network lock of their dump is lifted.
   */
  connectionsLive(): void {
    goLive(this.tcp.pending);
  }

  /** Stasis's own descriptors of this restore, whether it succeeded or not. */
  release(): void {
    closeStreams(this.tcp.pending.splice(0)); // ones still in repair mode close silently
    this.run.memfds.close();
    for (const { master } of this.orphanPts.values()) fs.closeSync(master); // handed over (or not needed)
  }
}

/**
 * The descriptors a child cloned from its restored parent keeps: those at a number where the
 * parent has the same description (fd → file id).
 */
function inheritedFds(mine: readonly FdinfoEntry[], parents: readonly FdinfoEntry[]): Map<number, number> {
  const theirs = new Map(parents.map((f) => [f.fd, f.id]));
  return new Map(mine.filter((f) => theirs.get(f.fd) === f.id).map((f) => [f.fd, f.id]));
}

/** Close every descriptor of the task but `kept`: one close_range per gap between them. */
function closeAllBut(inj: Injector, kept: ReadonlyMap<number, number>): void {
  const calls: SyscallSpec[] = [];
  let from = 0;
  for (const fd of [...kept.keys()].sort((a, b) => a - b)) {
    if (fd > from) calls.push([SYS.close_range, from, fd - 1, 0]);
    from = fd + 1;
  }
  calls.push([SYS.close_range, from, CLOSE_RANGE_ALL, 0]);
  inj.callAllChecked(calls);
}
