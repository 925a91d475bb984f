// The tree's own namespaces. The first task created at the top (the root, or a helper standing
// in for the leader of its session) is cloned into them by the seed, which first enters what
// the caller gives (an external network namespace, namespaces to join) and unshares the time
// namespace; once stasis has an injector on that task, it sets up the namespaces' contents:
// sysctls, SysV objects, mounts, host names, network devices. Every other task inherits them,
// but for mount namespaces nested inside the tree: the first task of one unshares it from the
// namespace it was cloned in and makes its mounts what they were (mount-ns/nested.ts), the
// others of it enter it; and for ipc and uts namespaces nested inside it, each made by a seed
// inside the user namespace owning it (task/nested-ns.ts), which its tasks enter once cloned.

import { sameNamespace } from '../../sys/setns.js';
import fs from 'node:fs';
import { applying } from '../errors.js';
import { SYS } from '../../sys/arch.js';
import type { Injector } from '../../sys/inject.js';
import { CLONE } from '../clone.js';
import { NEWTIME, ipcVarImageName, restoreIpc, restoreUts, timensOffsets, utsnsImageName } from '../namespaces.js';
import { restoreSysvIpc } from '../sysv-ipc.js';
import { netdevImageName, restoreNetns } from '../../net-ns/netns.js';
import { bringUpLoopback } from '../../net-ns/empty.js';
import { finishMounts, mountsImageName, restoreMounts, type LaterMount, type MntEntry } from '../../mount-ns/mounts.js';
import { mountEntriesOf, restoreNestedMounts } from '../../mount-ns/nested.js';
import type { Plan } from './plan.js';
import type { ThreadCoreEntry } from '../thread.js';
import { NESTED_FLAG, NESTED_KINDS, makeNestedNs } from '../nested-ns.js';
import { enterOwningUserNs, enterUserNs, inside, outside, groupsInside, makeUserNamespaces, unmappedRootWarning, usernsImageName, type MadeUserNs } from '../userns.js';
import type { RestoreRun, Restoring } from './state.js';

export class TreeNamespaces {
  /** Mounts that wait until every task has its files (see mount-ns/mounts.ts). */
  private laterMounts: LaterMount[] = [];

  /** The nested mount namespaces made so far: id → the task (as stasis sees it) that made it. */
  private readonly mountNsMade = new Map<number, number>();
  /** Their mounts that wait until every task has its files, with the task that made each. */
  private readonly nestedLater: { t: Restoring; nsId: number; later: LaterMount[] }[] = [];

  /** The tree's user namespaces, once made (before the first clone when the root's owns the tree's namespaces). */
  private userNs?: Map<number, MadeUserNs>;

  /** The nested ipc and uts namespaces made so far: id → stasis's descriptor. */
  private readonly nestedMade = new Map<number, number>();

  constructor(private readonly run: RestoreRun, private readonly plan: Plan) {}

  /** The root's user namespace when it owns the tree's own namespaces (its id), else undefined. */
  private get owningUserNs(): number | undefined {
    const { img } = this.run;
    const id = img.userNsOf.get(img.procs[0]!.pid);
    return id !== undefined && img.userns.get(id)?.owns_tree_ns ? id : undefined;
  }

  /** The tree's user namespaces, made the first time they are needed. */
  private madeUserNs(): Map<number, MadeUserNs> {
    this.userNs ??= applying('userns-*.img', 'the tree\'s user namespaces', () => makeUserNamespaces(this.run.img.userns));
    return this.userNs;
  }

  /** The clone flags of the first task at the top (time is unshared by the seed instead). */
  get cloneFlags(): number {
    return this.run.img.nsFlags & ~NEWTIME;
  }

  /** What the seed does before it clones the first task at the top. */
  beforeFirstClone(seed: Injector): void {
    const { img } = this.run;
    if (this.plan.netnsFd !== undefined) seed.callChecked(SYS.setns, this.plan.netnsFd, CLONE.NEWNET);
    for (const j of this.plan.joined) seed.callChecked(SYS.setns, j.fd, j.type);
    // Into the root's user namespace (made now, mapped) when it owns the tree's namespaces: the
    // clone makes them in it, the root starting there as the namespace's root (task/userns.ts).
    const owning = this.owningUserNs;
    if (owning !== undefined) {
      const made = this.madeUserNs().get(owning)!;
      applying(usernsImageName(owning), 'the tree\'s own namespaces', () => {
        const fd = this.run.giveFd(seed, made.fd);
        enterOwningUserNs(seed, made, fd);
      });
    }
    if (img.nsFlags & CLONE.NEWPID) this.run.stasisPidfd = Number(seed.callChecked(SYS.pidfd_open, process.pid, 0));
    // A time namespace for the seed's children, its clocks set before the root enters.
    if (img.nsFlags & NEWTIME) {
      seed.callChecked(SYS.unshare, NEWTIME);
      fs.writeFileSync(`/proc/${seed.pid}/timens_offsets`, timensOffsets(img.timens!));
    }
  }

  /**
   * The container's own world, before anything in it is opened: mounts, names, loopback. The
   * sysctls first: the objects' limits (a queue's byte limit above the default) may depend on
   * them.
   */
  setUp(inj: Injector, pid: number): void {
    const { img, opts } = this.run;
    const ids = img.rootIds!;
    const ns = `namespaces of task ${pid}`;
    // through the host's /proc/sys, still mounted here
    if (img.ipc) applying(ipcVarImageName(ids.ipc_ns_id!), ns, () => restoreIpc(inj, img.ipc!));
    // (the objects' ids as the root's user namespace sees them, when it owns the tree's)
    const owner = this.owningUserNs !== undefined ? this.userNs?.get(this.owningUserNs) : undefined;
    if (img.sysv) applying(`ipcns-*-${ids.ipc_ns_id}.img`, ns, () => restoreSysvIpc(pid, img.sysv!, img.ipc, owner));
    if (img.mounts) {
      // (in a namespace owned by the root's user namespace: the images' ids are as it sees them)
      const setup = owner ? { ...this.plan.mountSetup!, ids: {
        uid: (v: number) => outside(owner.uid, v), gid: (v: number) => outside(owner.gid, v),
        maker: { uid: outside(owner.uid, 0) ?? owner.uid[0]!.lower_first, gid: outside(owner.gid, 0) ?? owner.gid[0]!.lower_first },
      } } : this.plan.mountSetup!;
      this.laterMounts = applying(mountsImageName(ids.mnt_ns_id!), ns, () => restoreMounts(inj, pid, img.mounts!, setup, (fd) => this.run.giveFd(inj, fd)));
      const unmapped = owner && unmappedRootWarning(owner, setup.root);
      if (unmapped) opts.warn?.(unmapped);
    }
    if (img.uts) applying(utsnsImageName(ids.uts_ns_id!), ns, () => restoreUts(inj, img.uts!));
    if (img.net) {
      applying(netdevImageName(img.net.nsId), ns, () => restoreNetns(pid, img.net!.devices, img.file, img.net!.nsId));
    } else if (img.nsFlags & CLONE.NEWNET) {
      bringUpLoopback(inj);
    }
    // Connections are rebuilt in a namespace of the tree's own: nothing in or out until they are
    // live (and a dump's lock left there goes with the restore's: see RestoreLock).
    if (img.tcpStreams && !sameNamespace(pid, 'net')) this.run.netLock.inNamespace(pid, this.run.opts.tcpEstablished === true);
    opts.namespacesReady?.(pid);
  }

  /**
   * A task just cloned by `cloner` (image PID; a task of the tree), before anything of it is
   * restored: if its mount namespace is not its cloner's, it gets its own — made now from a copy
   * of the cloner's, or entered when another task made it already. Returns whether it entered
   * one (setns puts its cwd and root at the namespace's root: nothing of them is inherited).
   */
  enterMountNs(t: Restoring, cloner: number): boolean {
    const { img } = this.run;
    const want = img.mntNsOf.get(t.p.pid);
    const from = img.mntNsOf.get(cloner);
    if (want === undefined || from === undefined || want === from) return false;
    const name = mountsImageName(want);
    const what = `mount namespace of task ${t.p.pid}`;
    // (back in the tree's own from a nested one: the root's)
    const rootNs = want === Number(img.rootIds!.mnt_ns_id);
    const made = rootNs ? this.run.tasks.get(img.procs[0]!.pid)?.hpid : this.mountNsMade.get(want);
    if (rootNs && made === undefined) throw new Error(`${what}: the tree's own, but its root is not restored`);
    if (made !== undefined) {
      const own = fs.openSync(`/proc/${made}/ns/mnt`, 'r');
      try {
        const fd = this.run.giveFd(t.inj, own);
        applying(name, what, () => t.inj.callChecked(SYS.setns, fd, CLONE.NEWNS));
        t.inj.call(SYS.close, fd);
      } finally {
        fs.closeSync(own);
      }
      return true;
    }
    const entries = img.nestedMounts.get(want)!;
    // What the copy is made from: the cloner's namespace as dumped, or as it stands (the host's).
    const base: MntEntry[] = from === Number(img.rootIds!.mnt_ns_id) ? img.mounts ?? mountEntriesOf(this.run.tasks.get(cloner)!.hpid)
      : img.nestedMounts.get(from)!;
    const later = applying(name, what, () => {
      t.inj.callChecked(SYS.unshare, CLONE.NEWNS);
      return restoreNestedMounts(t.inj, t.hpid, entries, base, (n) => (fs.existsSync(img.file(n)) ? img.file(n) : undefined));
    });
    if (later.length) this.nestedLater.push({ t, nsId: want, later });
    this.mountNsMade.set(want, t.hpid);
    return false;
  }

  /**
   * A task just cloned (before its memory is restored: a segment it attaches is its namespace's)
   * enters its nested ipc and uts namespaces, made now if it is the first of one, or the root's
   * when it was cloned in another (task/nested-ns.ts).
   */
  enterNestedNs(t: Restoring): void {
    const { img } = this.run;
    if (!img.nestedNs.size || t.p.pid === img.procs[0]!.pid) return;
    const want = img.nestedNsOf.get(t.p.pid) ?? {};
    for (const kind of NESTED_KINDS) {
      const id = want[kind];
      const what = `${kind} namespace of task ${t.p.pid}`;
      const name = id === undefined ? `ids-${t.p.pid}.img` : kind === 'uts' ? utsnsImageName(id) : ipcVarImageName(id);
      let fd: number;
      if (id === undefined) {
        fd = fs.openSync(`/proc/${this.run.tasks.get(img.procs[0]!.pid)!.hpid}/ns/${kind}`, 'r');
      } else {
        const e = img.nestedNs.get(id)!;
        let made = this.nestedMade.get(id);
        if (made === undefined) {
          const owner = e.owner !== undefined ? this.madeUserNs().get(e.owner) : undefined;
          made = applying(name, what, () => makeNestedNs(e, owner));
          this.nestedMade.set(id, made);
        }
        fd = made;
      }
      try {
        if (fs.fstatSync(fd).ino === fs.statSync(`/proc/${t.hpid}/ns/${kind}`).ino) continue;
        const theirs = this.run.giveFd(t.inj, fd);
        applying(name, what, () => t.inj.callChecked(SYS.setns, theirs, NESTED_FLAG[kind]));
        t.inj.call(SYS.close, theirs);
      } finally {
        if (id === undefined) fs.closeSync(fd);
      }
    }
  }

  /**
   * Every process of the tree in a user namespace of its own enters it, once all processes
   * exist (their PIDs chosen on the host) and before their threads, their credentials then set
   * inside (task/userns.ts). The namespaces are made now, parents first.
   */
  enterUserNamespaces(): void {
    const { img } = this.run;
    if (!img.userNsOf.size) return;
    const made = this.madeUserNs();
    const owning = this.owningUserNs;
    try {
      for (const t of this.run.tasks.values()) {
        const id = img.userNsOf.get(t.p.pid);
        if (id === undefined) continue;
        const ns = made.get(id)!;
        const creds = (t.p.cores.get(t.p.pid)!.thread_core as ThreadCoreEntry).creds;
        const what = `task ${t.p.pid}: user namespace ${id}`;
        if (id === owning) {
          // (in it since its birth)
          t.credsNow = applying(usernsImageName(id), what, () => groupsInside(t.inj, ns, creds?.groups ?? []));
          t.bornInUserNs = true;
          continue;
        }
        t.credsNow = applying(usernsImageName(id), what, () => {
          // (stasis's pidfd in the task, once its files are restored, is where they moved it)
          const pidfd = t.pidfds.get(process.pid);
          const fd = pidfd !== undefined ? Number(t.inj.callChecked(SYS.pidfd_getfd, pidfd, ns.fd, 0)) : this.run.giveFd(t.inj, ns.fd);
          try {
            return enterUserNs(t.inj, ns, fd, creds?.groups ?? [], what);
          } finally {
            t.inj.call(SYS.close, fd);
          }
        });
      }
    } finally {
      for (const ns of made.values()) fs.closeSync(ns.fd);
    }
  }

  /** The mounts that had to wait for the tasks' files (by the root task, image PID `rootPid`). */
  finish(rootInj: Injector, rootPid: number): void {
    for (const fd of this.nestedMade.values()) fs.closeSync(fd);
    this.nestedMade.clear();
    if (this.laterMounts.length) {
      applying(mountsImageName(this.run.img.rootIds!.mnt_ns_id!), `namespaces of task ${rootPid}`, () => finishMounts(rootInj, this.laterMounts));
    }
    for (const { t, nsId, later } of this.nestedLater) {
      applying(mountsImageName(nsId), `mount namespace of task ${t.p.pid}`, () => finishMounts(t.inj, later));
    }
  }
}
