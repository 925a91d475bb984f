// The descriptor invariant of checkpoint/restore: every task of a tree has, after its restore,
// the descriptors it had before its dump, each with the same fdinfo flags (close-on-exec
// included) and position. The tests' dump and restore helpers take a snapshot before the dump
// and compare the restored tree with it (test/helpers/stasis.ts, runc.ts, podman.ts).
//
// Tasks are matched by their PID in their innermost pid namespace (a container's tasks have new
// host PIDs) and their comm. Only tasks seen both before and after are compared: a tree that
// forks and reaps (a shell's `sleep`) has children that come and go between the snapshot and
// the dump; the root is always compared.

import fs from 'node:fs';
import { ProcError, readStatus } from '../sys/proc/index.js';
import { descendants } from './launch.js';

/** One descriptor: its fdinfo `flags` (octal, as printed) and `pos`, and what it names. */
export interface FdState { flags: string; pos: string; link: string }

export interface TaskFds {
  /** PID in the task's innermost pid namespace. */
  nsPid: number;
  /** PID as this process sees it. */
  pid: number;
  comm: string;
  fds: Map<number, FdState>;
}

export interface TreeFds {
  /** The root's innermost-namespace PID. */
  root: number;
  /** Tasks by innermost-namespace PID. */
  tasks: Map<number, TaskFds>;
}

/** `pid` and everything below it, parents first (processes that vanish meanwhile are left out). */
function treeOf(pid: number): number[] {
  return fs.existsSync(`/proc/${pid}`) ? [pid, ...descendants(pid)] : [];
}

function taskFds(pid: number): TaskFds | undefined {
  try {
    const status = readStatus(pid);
    const fds = new Map<number, FdState>();
    for (const name of fs.readdirSync(`/proc/${pid}/fdinfo`)) {
      const fd = Number(name);
      let text: string;
      let link: string;
      try {
        text = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue; // closed meanwhile: a transient descriptor
      }
      const field = (k: string) => new RegExp(`^${k}:\\s*(\\S+)$`, 'm').exec(text)?.[1] ?? '?';
      fds.set(fd, { flags: field('flags'), pos: field('pos'), link });
    }
    return { nsPid: status.nsPid[status.nsPid.length - 1]!, pid, comm: status.name, fds };
  } catch (e) {
    if (e instanceof ProcError || (e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH') {
      return undefined; // gone (or a zombie, whose table is gone)
    }
    throw e;
  }
}

/** Every task of the tree under `rootPid` (host PID) with its descriptors. */
export function snapshotFds(rootPid: number): TreeFds {
  const tasks = new Map<number, TaskFds>();
  let root = -1;
  for (const pid of treeOf(rootPid)) {
    const t = taskFds(pid);
    if (!t) continue;
    if (pid === rootPid) root = t.nsPid;
    tasks.set(t.nsPid, t);
  }
  if (root < 0) throw new Error(`fd snapshot: process ${rootPid} is gone`);
  return { root, tasks };
}

/** Wait `ms` without returning to the event loop (the container helpers run their tools synchronously). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * A snapshot of a tree at rest: taken until two in a row agree (a shell caught in the middle
 * of a redirection, or between fork and exec, is not at rest), at most a fifth of a second long.
 */
export function settledSnapshot(rootPid: number): TreeFds {
  let last = snapshotFds(rootPid);
  for (let i = 0; i < 10; i++) {
    sleepSync(20);
    const now = snapshotFds(rootPid);
    if (fdDifferences(last, now, { sameTasks: true }).length === 0) return now;
    last = now;
  }
  return last;
}

export interface CompareOptions {
  /** Descriptors not compared, by task (innermost PID; the root's with 'root') and fd, with why. */
  exclude?: { task: number | 'root'; fd: number; why: string }[];
  /** The task sets must be equal too (not only the tasks seen in both compared). */
  sameTasks?: boolean;
}

const show = (s: FdState | undefined) => (s ? `flags ${s.flags} pos ${s.pos} (${s.link})` : 'not open');

/** What differs between two snapshots, one line per difference; [] when the invariant holds. */
export function fdDifferences(before: TreeFds, after: TreeFds, opts: CompareOptions = {}): string[] {
  const out: string[] = [];
  if (before.root !== after.root) out.push(`root is task ${after.root}, was ${before.root}`);
  const excluded = (task: number, fd: number) => opts.exclude?.some((x) =>
    x.fd === fd && (x.task === task || (x.task === 'root' && task === before.root)));
  for (const [nsPid, b] of before.tasks) {
    const a = after.tasks.get(nsPid);
    if (!a || a.comm !== b.comm) {
      if (opts.sameTasks || nsPid === before.root) out.push(`task ${nsPid} (${b.comm}) is gone`);
      continue;
    }
    for (const fd of new Set([...b.fds.keys(), ...a.fds.keys()])) {
      if (excluded(nsPid, fd)) continue;
      const x = b.fds.get(fd);
      const y = a.fds.get(fd);
      if (x?.flags !== y?.flags || x?.pos !== y?.pos) {
        out.push(`task ${nsPid} (${b.comm}) fd ${fd}: ${show(x)} before, ${show(y)} after`);
      }
    }
  }
  if (opts.sameTasks) {
    for (const [nsPid, a] of after.tasks) if (!before.tasks.has(nsPid)) out.push(`task ${nsPid} (${a.comm}) is new`);
  }
  return out;
}

/**
 * Compare the restored tree under `rootPid` with `before`; a difference seen is looked at again
 * for up to a second (a restored shell may be resumed in the middle of what it was doing).
 */
export function restoredFdDifferences(before: TreeFds, rootPid: number | (() => number),
  opts: CompareOptions = {}): string[] {
  let diffs: string[] = [];
  for (let i = 0; i < 10; i++) {
    if (i) sleepSync(100);
    diffs = fdDifferences(before, snapshotFds(typeof rootPid === 'number' ? rootPid : rootPid()), opts);
    if (!diffs.length) return [];
  }
  return diffs;
}

/** Throw, naming every difference, unless the restored tree has the descriptors of `before`. */
export function expectFdsKept(what: string, before: TreeFds, rootPid: number | (() => number), opts: CompareOptions = {}): void {
  const diffs = restoredFdDifferences(before, rootPid, opts);
  if (diffs.length) throw new Error(`${what}: the restored tree's descriptors differ from the dumped one's: ${diffs.join('; ')}`);
}
