// The tree's own namespaces. The first task created at the top (the root, or a helper standing
// in for the leader of its session) is cloned into them by the seed, which first enters what
// the caller gives (an external network namespace, namespaces to join) and unshares the time
// namespace; once stasis has an injector on that task, it sets up the namespaces' contents:
// sysctls, SysV objects, mounts, host names, network devices. Every other task inherits them.

import { NamespaceLock } from '../../net-ns/network-lock.js';
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
import { finishMounts, mountsImageName, restoreMounts, type LaterMount } from '../../mount-ns/mounts.js';
import type { Plan } from './plan.js';
import type { RestoreRun } from './state.js';

export class TreeNamespaces {
  /** Mounts that wait until every task has its files (see mount-ns/mounts.ts). */
  private laterMounts: LaterMount[] = [];

  constructor(private readonly run: RestoreRun, private readonly plan: Plan) {}

  /** The clone flags of the first task at the top (time is unshared by the seed instead). */
  get cloneFlags(): number {
    return this.run.img.nsFlags & ~NEWTIME;
  }

  /** What the seed does before it clones the first task at the top. */
  beforeFirstClone(seed: Injector): void {
    const { img } = this.run;
    if (this.plan.netnsFd !== undefined) seed.callChecked(SYS.setns, this.plan.netnsFd, CLONE.NEWNET);
    for (const j of this.plan.joined) seed.callChecked(SYS.setns, j.fd, j.type);
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
    if (img.sysv) applying(`ipcns-*-${ids.ipc_ns_id}.img`, ns, () => restoreSysvIpc(pid, img.sysv!, img.ipc));
    if (img.mounts) {
      this.laterMounts = applying(mountsImageName(ids.mnt_ns_id!), ns, () => restoreMounts(inj, pid, img.mounts!, this.plan.mountSetup!));
    }
    if (img.uts) applying(utsnsImageName(ids.uts_ns_id!), ns, () => restoreUts(inj, img.uts!));
    if (img.net) {
      applying(netdevImageName(img.net.nsId), ns, () => restoreNetns(pid, img.net!.devices, img.file, img.net!.nsId));
    } else if (img.nsFlags & CLONE.NEWNET) {
      bringUpLoopback(inj);
    }
    // Connections are rebuilt in a namespace of the tree's own: nothing in or out until they are live.
    if (img.tcpStreams && this.run.opts.tcpEstablished && !sameNamespace(pid, 'net')) this.run.netLock = NamespaceLock.lock(pid);
    opts.namespacesReady?.(pid);
  }

  /** The mounts that had to wait for the tasks' files (by the root task, image PID `rootPid`). */
  finish(rootInj: Injector, rootPid: number): void {
    if (!this.laterMounts.length) return;
    applying(mountsImageName(this.run.img.rootIds!.mnt_ns_id!), `namespaces of task ${rootPid}`, () => finishMounts(rootInj, this.laterMounts));
  }
}
