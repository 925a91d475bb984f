// The tree of processes, made top-down: each process cloned with its PID by its restored parent
// (the root by a seed, task/clone.ts), taking its session at birth so that its children inherit
// it. Before it clones its children a process gets its memory, signal actions, descriptors, cwd
// and name, so that they start as copies of what they share with it. A leader born in a session
// some of its children stay in clones those first and starts its own after them; a leader's
// orphan in its session is cloned by the leader, with CLONE_PARENT or as its own child to be
// orphaned again when the (zombie) leader dies (plan.ts Sessions). Helpers
// stand in for session and group leaders that are gone (plan.ts); once all exist, groups are
// joined, helpers exit, and zombies die with the status their parent will collect.

import { imageFileName } from '../../images/index.js';
import { applying } from '../errors.js';
import { SYS } from '../../sys/arch.js';
import { Injector } from '../../sys/inject.js';
import { tgkill } from '../../sys/native.js';
import { SIGCHLD, SIGKILL, cont, waitTask } from '../../sys/ptrace.js';
import { CLONE, cloneInto, createTask } from '../clone.js';
import { restoreCreds } from '../creds.js';
import { restoreFs } from '../fs.js';
import { SIG_IGN, catchableSignals, restoreSigactions, type SaEntry } from '../sigactions.js';
import { setComm, type ThreadCoreEntry } from '../thread.js';
import { TASK_DEAD } from '../tree.js';
import { placeInCgroups } from '../../cgroup/cgroups.js';
import { PR_SET_CHILD_SUBREAPER } from './attributes.js';
import type { ProcessImages } from './images.js';
import type { TreeFiles } from './files.js';
import { TreeMemory, vdsoOf } from './memory.js';
import type { TreeNamespaces } from './namespaces.js';
import type { Helper, Plan } from './plan.js';
import type { RestoreRun, Restoring } from './state.js';

const WALL = 0x40000000;
const PR_SET_DUMPABLE = 4;
/** The wait status bit of a process that dumped core. */
const WCOREFLAG = 0x80;

export function sigactionsOf(p: ProcessImages): SaEntry[] {
  return (p.cores.get(p.pid)!.tc.sigactions ?? []) as SaEntry[];
}

/** The signals a restored process ignores once its actions are set (SigIgn bits), SIGCHLD aside. */
export function ignoredBy(p: ProcessImages): bigint {
  let bits = 0n;
  const entries = sigactionsOf(p);
  [...catchableSignals()].forEach((sig, i) => {
    if (sig !== SIGCHLD && entries[i] && BigInt(entries[i]!.sigaction) === SIG_IGN) bits |= 1n << BigInt(sig - 1);
  });
  return bits;
}

/**
 * The order processes are created in: each after the process that clones it (its parent, or its
 * session's leader), and the children a leader clones before its setsid() before the others.
 * The image's order where no session asks otherwise.
 */
function creationOrder(procs: readonly ProcessImages[], sessions: Plan['sessions']): ProcessImages[] {
  if (!sessions.bornIn.size && !sessions.byLeader.size && !sessions.orphanOf.size) return [...procs];
  const cloner = (p: ProcessImages) => sessions.byLeader.get(p.pid) ?? sessions.orphanOf.get(p.pid) ?? p.ppid;
  const clonedBy = new Map<number, ProcessImages[]>();
  for (const p of procs) clonedBy.set(cloner(p), [...(clonedBy.get(cloner(p)) ?? []), p]);
  const order: ProcessImages[] = [];
  const visit = (pid: number) => {
    const born = sessions.bornIn.get(pid);
    const kids = clonedBy.get(pid) ?? [];
    const first = kids.filter((c) => born !== undefined && birthSession(c, sessions) === born);
    for (const c of [...first, ...kids.filter((k) => !first.includes(k))]) {
      order.push(c);
      visit(c.pid);
    }
  };
  visit(0);
  return order;
}

/** The session a process must be born in (undefined: any, it starts its own at once). */
function birthSession(p: ProcessImages, sessions: Plan['sessions']): number | undefined {
  return sessions.bornIn.get(p.pid) ?? (p.sid === p.pid ? undefined : p.sid);
}

/** Every process of the image created, with its memory (and, where it can be, its files). */
export function createTree(run: RestoreRun, plan: Plan, ns: TreeNamespaces, files: TreeFiles): void {
  const { img, opts, tasks } = run;
  const memory = new TreeMemory(run);
  const helperInj = new Map<number, Injector>();
  const helperHpid = new Map<number, number>();
  const parentInj = (ppid: number) => tasks.get(ppid)!.inj;
  // The first task created at the top gets the tree's own namespaces and cgroups; once stasis
  // has an injector on it, it sets the namespaces up (nsOwner).
  let topMade = false;
  let nsOwner: number | undefined;
  const createTop = (vpid: number): number => {
    const first = !topMade;
    topMade = true;
    const flags = first ? ns.cloneFlags : 0;
    if ((flags & CLONE.NEWPID) && vpid !== 1) {
      throw new Error(`pstree.img: the dump has its own pid namespace, but its first task would be ${vpid}, not 1 (a session led from outside it)`);
    }
    const pid = createTask(flags & CLONE.NEWPID ? undefined : vpid, {
      siblingOfStasis: opts.siblingOfStasis, flags,
      beforeClone: (seed) => {
        if (first) ns.beforeFirstClone(seed);
      },
    });
    // Into the runtime's cgroups before anything is forked or charged (a new cgroup namespace
    // made by the clone stays rooted where the seed was).
    if (first && opts.cgRoots?.length) placeInCgroups(pid, opts.cgRoots, opts.warn);
    if (first && img.nsFlags) nsOwner = pid;
    return pid;
  };
  const makeHelper = (h: Helper): Injector => {
    let inj = helperInj.get(h.pid);
    if (inj) return inj;
    const viaSession = h.kind === 'group' && h.sid !== (h.ppid ? tasks.get(h.ppid)!.p.sid : run.ownSid)
      ? makeHelper(plan.helpers.find((x) => x.kind === 'session' && x.pid === h.sid && x.ppid === h.ppid)!) : undefined;
    const what = `${h.kind} ${h.pid} (its leader is not in the dump)`;
    const pid = applying('pstree.img', what, () => (viaSession
      ? cloneInto(viaSession, { setTid: [h.pid], flags: CLONE.PARENT })
      : h.ppid === 0
        ? createTop(h.pid)
        : cloneInto(parentInj(h.ppid), { setTid: [h.pid] })));
    run.created.push(pid);
    inj = new Injector(pid, pid, { pin: false });
    if (pid === nsOwner) ns.setUp(inj, pid);
    helperInj.set(h.pid, inj);
    helperHpid.set(h.pid, pid);
    applying('pstree.img', what, () => (h.kind === 'session' ? inj!.callChecked(SYS.setsid) : inj!.callChecked(SYS.setpgid, 0, 0)));
    return inj;
  };
  // Leaders whose setsid() waits until the children born in their old session exist.
  const setsidLater = new Set<number>();
  const startSession = (t: Restoring) => {
    applying('pstree.img', `process ${t.p.pid}: session`, () => t.inj.callChecked(SYS.setsid));
    t.pgidNow = t.p.pid;
    setsidLater.delete(t.p.pid);
  };
  for (const p of creationOrder(img.procs, plan.sessions)) {
    const sessionHelper = plan.helpers.find((h) => h.kind === 'session' && h.pid === p.sid && h.ppid === p.ppid);
    const orphanOf = plan.sessions.orphanOf.get(p.pid);
    const leader = plan.sessions.byLeader.get(p.pid) ?? orphanOf;
    // The cloner in its old session only for the children born there.
    const cloner = leader ?? p.ppid;
    if (setsidLater.has(cloner) && birthSession(p, plan.sessions) !== plan.sessions.bornIn.get(cloner)) startSession(tasks.get(cloner)!);
    const core = imageFileName('CORE', p.pid);
    const task = `task ${p.pid}`;
    const pid = applying('pstree.img', `process ${p.pid}`, () => {
      if (sessionHelper) return cloneInto(makeHelper(sessionHelper), { setTid: [p.pid], flags: CLONE.PARENT });
      if (leader !== undefined) return cloneInto(tasks.get(leader)!.inj, { setTid: [p.pid], flags: orphanOf === undefined ? CLONE.PARENT : 0 });
      if (p.ppid === 0) return createTop(p.pid);
      return cloneInto(parentInj(p.ppid), { setTid: [p.pid] });
    });
    run.created.push(pid);
    // Cloned from its restored parent (not through a helper or leader), it starts as a copy of
    // it: the vDSO where the parent's image puts it, the signals the parent's image ignores
    // (SIGCHLD's action aside, which is stasis's still), and below, its VMAs, actions and
    // descriptors.
    const parent = p.ppid && !sessionHelper && leader === undefined ? tasks.get(p.ppid)!.p : undefined;
    const live = parent && parent.state !== TASK_DEAD ? parent : undefined;
    const inj = new Injector(pid, pid, {
      pin: false, vdsoStart: parent && vdsoOf(parent), sigIgn: live && ignoredBy(live),
    });
    const from = parent && tasks.get(parent.pid);
    // A fork's group and name are its cloner's.
    const by = from ?? (leader !== undefined ? tasks.get(leader) : undefined);
    const t: Restoring = {
      p, hpid: pid, inj, threads: new Map(), pidfds: new Map(), fsHas: {}, pgidNow: by?.pgidNow, commNow: by?.commNow,
    };
    tasks.set(p.pid, t);
    if (pid === nsOwner) ns.setUp(inj, pid);
    const fsReset = p.state !== TASK_DEAD && tasks.has(cloner) && ns.enterMountNs(t, cloner);
    if (p.state !== TASK_DEAD) ns.enterNestedNs(t);
    if (p.sid === p.pid) {
      if (plan.sessions.bornIn.has(p.pid)) setsidLater.add(p.pid);
      else startSession(t);
    }
    // A child subreaper whose orphans come to it when the zombies die (below, before the
    // attributes are set).
    if (plan.sessions.reapers.has(p.pid)) {
      applying(core, `${task}: child subreaper`, () => inj.callChecked(SYS.prctl, PR_SET_CHILD_SUBREAPER, 1));
    }
    // Its memory now, before it clones its children: they then copy this small address space
    // rather than the seed's copy of stasis, and have little to tear down.
    if (p.state === TASK_DEAD) continue;
    memory.restore(t, from);
    // Signal actions too, for its children to inherit; all but SIGCHLD's, which would change
    // how the zombies and helpers made below are reaped (set with the attributes).
    applying(core, `${task}: signal actions`, () => restoreSigactions(inj, sigactionsOf(p), {
      only: (sig) => sig !== SIGCHLD, current: live && sigactionsOf(live),
    }));
    // (a table opening files through another mount namespace waits, and is nothing to inherit)
    if (!files.deferred && !files.waits(t)) files.restore(t, from?.filesDone ? live : undefined);
    // The cwd too, for the children to inherit (and not set again when it is theirs), where
    // no chroot and no mount yet to come can change what the path names.
    if (!img.mounts && run.regFile(p.fs!.root_id).name === '/') {
      const cwd = { cwd_id: p.fs!.cwd_id, root_id: p.fs!.root_id };
      applying(imageFileName('FS', p.pid), task, () => restoreFs(inj, cwd, (id) => run.regFile(id), live && !fsReset ? from?.fsHas : undefined,
        (n) => img.extraImage(n)));
      t.fsHas = cwd;
    }
    // And its name (its children's until they have their own).
    const comm = (p.cores.get(p.pid)!.thread_core as ThreadCoreEntry).comm;
    if (comm !== undefined && comm !== t.commNow) {
      applying(core, `${task}: name`, () => setComm(inj, comm));
      t.commNow = comm;
    }
  }
  for (const pid of [...setsidLater]) startSession(tasks.get(pid)!);
  for (const h of plan.helpers) makeHelper(h);
  joinGroups(run, helperInj);
  // Helpers have done their part: they exit, and their parent reaps them at once.
  for (const h of plan.helpers) {
    const inj = helperInj.get(h.pid)!;
    inj.callAndRelease(SYS.exit_group, 0);
    const hp = helperHpid.get(h.pid)!;
    for (;;) {
      const w = waitTask(hp, { timeoutMs: 5000 })!;
      if (w.kind !== 'stopped') break;
      cont(hp, 0);
    }
    if (h.ppid !== 0) tasks.get(h.ppid)!.inj.callChecked(SYS.wait4, h.pid, 0, WALL, 0);
  }
  run.treeMadeAt = performance.now();
  run.log(`${tasks.size} processes created in ${(run.treeMadeAt - run.t0).toFixed(1)} ms`);
}

/**
 * Groups: leaders first, then members join (a session leader already leads its group; a group
 * led from outside the tree, the root's shell job, is inherited from stasis). Where a fork left
 * a task in its group already, nothing is called.
 */
function joinGroups(run: RestoreRun, helperInj: ReadonlyMap<number, Injector>): void {
  for (const t of run.tasks.values()) {
    if (t.p.pgid === t.p.pid && t.p.sid !== t.p.pid && t.pgidNow !== t.p.pid) {
      applying('pstree.img', `process ${t.p.pid}: group ${t.p.pid}`, () => t.inj.callChecked(SYS.setpgid, 0, 0));
    }
  }
  for (const { p, inj, pgidNow } of run.tasks.values()) {
    if (p.pgid !== p.pid && pgidNow !== p.pgid && (run.tasks.has(p.pgid) || helperInj.has(p.pgid))) {
      applying('pstree.img', `process ${p.pid}: group ${p.pgid}`, () => inj.callChecked(SYS.setpgid, 0, p.pgid));
    }
  }
}

/** Zombies die now, with the status their parent will collect; they leave the tree's tasks. */
export function zombiesDie(run: RestoreRun): void {
  for (const t of run.tasks.values()) {
    if (t.p.state !== TASK_DEAD) continue;
    applying(imageFileName('CORE', t.p.pid), `task ${t.p.pid}: exit as a zombie`,
      () => becomeZombie(t, Number(t.p.cores.get(t.p.pid)!.tc.exit_code)));
    run.tasks.delete(t.p.pid);
  }
}

/**
 * Make a freshly cloned task exit the way the dumped zombie did, with its credentials (stasis's
 * dumps have them; their ids are what its parent's waitid() reports); its parent will reap it.
 */
function becomeZombie(t: Restoring, status: number): void {
  const { inj } = t;
  restoreCreds(inj, (t.p.cores.get(t.p.pid)!.thread_core as ThreadCoreEntry | undefined)?.creds, t.credsNow);
  const sig = status & 0x7f;
  if (sig === SIGKILL) {
    // Its action cannot be set, nor is it needed: it kills a stopped task as it is.
    tgkill(t.hpid, t.hpid, sig);
  } else if (sig) {
    // Killed by another signal: die of it, with its default action, unblocked. Not dumpable
    // unless its status says it dumped core: no core file of the stand-in, no core flag.
    inj.callChecked(SYS.rt_sigaction, sig, inj.writeScratch(Buffer.alloc(32)), 0, 8);
    if (!(status & WCOREFLAG)) inj.callChecked(SYS.prctl, PR_SET_DUMPABLE, 0);
    inj.finish({ sigmask: 0n });
    tgkill(t.hpid, t.hpid, sig);
    cont(t.hpid, 0);
  } else {
    inj.callAndRelease(SYS.exit_group, (status >> 8) & 0xff);
  }
  // Collect the exit as its tracer only: the zombie stays for its (restored) parent to reap.
  for (;;) {
    const w = waitTask(t.hpid, { timeoutMs: 5000 })!;
    if (w.kind !== 'stopped') return;
    cont(t.hpid, w.event ? 0 : w.signal);
  }
}
