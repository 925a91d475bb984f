// The plan of a restore, made before any task exists: which helper tasks stand in for session
// and group leaders that are gone, whether the tree's PIDs are free, and what the caller hands
// over (descriptors to inherit, namespaces to join, the container's root).

import fs from 'node:fs';
import { printable } from '../../images/index.js';
import { applying } from '../errors.js';
import { keepApartFromStdio } from '../../sys/stdio.js';
import { CLONE } from '../clone.js';
import { NEWTIME } from '../namespaces.js';
import { TASK_DEAD } from '../tree.js';
import { checkMounts, mountsImageName } from '../../mount-ns/mounts.js';
import { netnsImageName } from '../../net-ns/netns.js';
import type { JoinNs, RestoreOptions } from '../restore.js';
import type { LoadedImages, ProcessImages } from './images.js';


/**
 * Sessions and groups whose leader is gone. fork() alone cannot put a process into such a
 * session or group; a helper task with the leader's PID stands in (setsid/setpgid), the real
 * processes are created from it with CLONE_PARENT (keeping their real parent but taking the
 * helper's session), join its group, and the helper exits and is reaped before anything runs.
 */
export interface Helper {
  pid: number;
  /** Parent of the helper (and of the processes created through it); 0 = stasis. */
  ppid: number;
  sid: number;
  /** A session helper calls setsid(); a group helper setpgid(0, 0). */
  kind: 'session' | 'group';
}

/**
 * Sessions a process has from a parent that started a session of its own after forking it (or
 * from further up: each parent on the way did so). fork() gives a child its parent's session as
 * it is then; such a parent calls setsid() only once the children that stay in its old session
 * exist. And a process in the session of a leader that is its parent's child too (an orphan of
 * the leader, which may be a zombie): the leader clones it with CLONE_PARENT once it leads. An
 * orphan of a zombie leader whose parent is not the leader's is the child of the one that reaps
 * orphans there (the pid namespace's init, or a child subreaper): the leader clones it as its
 * own child, and it goes to that reaper when the leader dies as a zombie again.
 */
export interface Sessions {
  /** Leaders that call setsid() after cloning the children that stay where they were born: pid → that session. */
  bornIn: Map<number, number>;
  /** Processes cloned by the leader of their session with CLONE_PARENT: pid → leader. */
  byLeader: Map<number, number>;
  /** Processes cloned by their (zombie) session leader as its child, orphaned when it dies: pid → leader. */
  orphanOf: Map<number, number>;
  /** Child subreapers that must be so before the zombies die (their orphans come to them then). */
  reapers: Set<number>;
}

function planSessions(procs: readonly ProcessImages[], ownSid: number, external: ReadonlySet<number>, ownPidNs: boolean): Sessions {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const sessions: Sessions = { bornIn: new Map(), byLeader: new Map(), orphanOf: new Map(), reapers: new Set() };
  const subreaper = (p: ProcessImages) => Boolean(p.cores.get(p.pid)!.tc.child_subreaper);
  // Where the orphans of `p` go: the nearest child subreaper above it, or the pid namespace's init.
  const reaperOf = (p: ProcessImages): ProcessImages | undefined => {
    for (let up = byPid.get(p.ppid); up; up = byPid.get(up.ppid)) {
      if (subreaper(up) || (ownPidNs && up.pid === 1)) return up;
    }
    return undefined;
  };
  const sidOf = (pid: number) => (pid === 0 ? ownSid : byPid.get(pid)!.sid);
  for (const p of procs) {
    if (p.sid === p.pid || p.sid === sidOf(p.ppid) || external.has(p.sid)) continue;
    // Up the parents, each a leader born in p's session, to one that is in it.
    const chain: number[] = [];
    let up = byPid.get(p.ppid);
    while (up && up.sid !== p.sid) {
      const born = sessions.bornIn.get(up.pid);
      if (up.sid !== up.pid || (born !== undefined && born !== p.sid)) break;
      chain.push(up.pid);
      up = byPid.get(up.ppid);
    }
    if (up?.sid === p.sid) {
      for (const pid of chain) sessions.bornIn.set(pid, p.sid);
      continue;
    }
    const leader = byPid.get(p.sid);
    if (!leader || leader.sid !== leader.pid) continue;
    if (leader.ppid === p.ppid) {
      sessions.byLeader.set(p.pid, leader.pid);
    } else if (leader.state === TASK_DEAD && reaperOf(leader)?.pid === p.ppid) {
      sessions.orphanOf.set(p.pid, leader.pid);
      if (subreaper(byPid.get(p.ppid)!)) sessions.reapers.add(p.ppid);
    }
  }
  return sessions;
}

function planHelpers(procs: readonly ProcessImages[], ownSid: number, external: ReadonlySet<number>, sessions: Sessions): Helper[] {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const helpers: Helper[] = [];
  const sidOf = (pid: number) => (pid === 0 ? ownSid : byPid.get(pid)!.sid);
  const inherits = (p: ProcessImages) => sessions.byLeader.has(p.pid) || sessions.orphanOf.has(p.pid) || sessions.bornIn.get(p.ppid) === p.sid;
  for (const p of procs) {
    if (p.sid === p.pid || p.sid === sidOf(p.ppid) || external.has(p.sid) || inherits(p)) continue;
    if (byPid.has(p.sid)) {
      throw new Error(`pstree.img: process ${p.pid} is in session ${p.sid}, led by another process of the dump, which neither its parent was born in nor its leader can clone it into: stasis cannot restore that yet`);
    }
    if (!helpers.some((h) => h.pid === p.sid && h.ppid === p.ppid)) {
      if (helpers.some((h) => h.pid === p.sid)) throw new Error(`pstree.img: session ${p.sid} spans processes with different parents: stasis cannot restore that yet`);
      helpers.push({ pid: p.sid, ppid: p.ppid, sid: p.sid, kind: 'session' });
    }
  }
  for (const p of procs) {
    if (p.pgid === p.pid || byPid.has(p.pgid) || helpers.some((h) => h.pid === p.pgid) || external.has(p.pgid)) continue;
    if (p.ppid === 0) continue; // the root's group, from outside the dump: stasis's own job
    helpers.push({ pid: p.pgid, ppid: p.ppid, sid: p.sid, kind: 'group' });
  }
  return helpers;
}

/** setns() types, which are also the flags under which the image's namespace of that kind is made. */
const JOINABLE: Record<JoinNs['kind'], number> = {
  ipc: CLONE.NEWIPC, uts: CLONE.NEWUTS, net: CLONE.NEWNET, time: NEWTIME,
};

/** What the restore is given and decided before it makes anything. */
export interface Plan {
  helpers: Helper[];
  sessions: Sessions;
  /** Descriptors handed over (--inherit-fd), kept apart from Node's stdio (sys/stdio.ts). */
  given: ReturnType<typeof keepApartFromStdio>;
  /** For a dump with its own mount namespace: where the container's root is, and external mounts. */
  mountSetup?: { root: string; extMnt: ReadonlyMap<string, string>; imagePath: (name: string) => string | undefined };
  /** The caller's descriptor of an external network namespace (stasis's own fd). */
  netnsFd?: number;
  /** Namespaces to join, open: the seed enters them before it clones the root. */
  joined: { fd: number; type: number }[];
}

/**
 * Everything checked that can be before a task exists, and what the caller hands over taken.
 * Joined namespaces are left out of the images' (`img` changes: what it holds of them is the
 * joined namespace's already). releasePlan() gives back what this opened.
 */
export function makePlan(opts: RestoreOptions, img: LoadedImages, ownSid: number): Plan {
  // A shell job's session and group belong to the shell: the restored job joins stasis's.
  const first = img.procs[0]!;
  const external = new Set(opts.shellJob ? [first.sid, first.pgid].filter((x) => x !== first.pid) : []);
  const sessions = planSessions(img.procs, ownSid, external, (img.nsFlags & CLONE.NEWPID) !== 0);
  const helpers = planHelpers(img.procs, ownSid, external, sessions);
  // In a pid namespace of its own, the tree's PIDs are all free.
  if (!(img.nsFlags & CLONE.NEWPID)) {
    for (const t of [...img.procs.flatMap((p) => p.threads), ...helpers.map((h) => h.pid)]) {
      if (fs.existsSync(`/proc/${t}`)) throw new Error(`pstree.img: PID ${t} is already in use`);
    }
  }
  const mountSetup = img.mounts && {
    root: opts.root ?? '', extMnt: opts.extMnt ?? new Map(),
    imagePath: (name: string) => (fs.existsSync(img.file(name)) ? img.file(name) : undefined),
  };
  if (img.mounts) {
    if (!opts.root) throw new Error(`${mountsImageName(img.rootIds!.mnt_ns_id!)}: the dump has its own mount namespace (a container): restore with --root DIR`);
    applying(mountsImageName(img.rootIds!.mnt_ns_id!), 'mount namespace', () => checkMounts(img.mounts!, mountSetup!));
  }
  // Pipes handed over that are stasis's stdio too: the tree gets them apart from what Node
  // does to its stdio (sys/stdio.ts).
  const given = keepApartFromStdio(opts.inheritFds ?? new Map());
  const plan: Plan = { helpers, sessions, given, mountSetup, joined: [] };
  try {
    // An external network namespace: the descriptor the caller passed for it (stasis's own fd,
    // which the seed inherits and enters before it clones the root).
    if (img.externalNet !== undefined && !opts.joinNs?.some((j) => j.kind === 'net')) {
      plan.netnsFd = given.fds.get(img.externalNet);
      if (plan.netnsFd === undefined) {
        throw new Error(`${netnsImageName(img.rootIds!.net_ns_id!)}: the network namespace was left external at dump (${printable(img.externalNet)}): give one with --inherit-fd fd[N]:${printable(img.externalNet)}`);
      }
    }
    // Namespaces to join: opened now (the seed inherits the descriptors and enters them before
    // it clones the root); what the image holds of them is left alone.
    for (const j of opts.joinNs ?? []) {
      let fd: number;
      try {
        fd = fs.openSync(j.file, 'r');
      } catch (e) {
        throw new Error(`join_ns ${j.kind}: cannot open ${j.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      plan.joined.push({ fd, type: JOINABLE[j.kind] });
      img.nsFlags &= ~JOINABLE[j.kind];
      if (j.kind === 'ipc') [img.ipc, img.sysv] = [undefined, undefined];
      if (j.kind === 'uts') img.uts = undefined;
      if (j.kind === 'net') [img.net, img.externalNet] = [undefined, undefined];
      if (j.kind === 'time') img.timens = undefined;
    }
  } catch (e) {
    releasePlan(plan);
    throw e;
  }
  return plan;
}

export function releasePlan(plan: Plan): void {
  for (const j of plan.joined) fs.closeSync(j.fd);
  plan.given.close();
}
