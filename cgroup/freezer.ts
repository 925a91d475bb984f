// Freezing a container's cgroup for the moment it takes to seize its tasks (runc's
// freeze_cgroup). A frozen cgroup cannot fork, so the list of its tasks is final: each is
// seized and interrupted while frozen, the cgroup is thawed at once, and every task stops in
// its ptrace interrupt on the way out of the freezer — before it runs a single instruction.
//
// cgroup v1: `freezer.state` (write FROZEN / THAWED, read until FROZEN); v2: `cgroup.freeze`
// (write 1 / 0) and `cgroup.events` ("frozen 1"). The state is read again every 0.2 ms rather than
// criu's 100 ms step: freezing a handful of tasks takes well under a millisecond.

import fs from 'node:fs';
import path from 'node:path';
import { readStat } from '../sys/proc/index.js';

const POLL_MS = 0.2;
const TIMEOUT_MS = 10_000;

export interface FrozenCgroup {
  /** Every thread in the cgroup (and below it), as stasis's pid namespace numbers them. */
  tasks: number[];
  /**
   * Threads in a job-control stop (a stopped task can only be seized once thawed). Read just
   * before the freeze too: a v1 freezer shows every frozen task as 'D', hiding it.
   */
  stopped: Set<number>;
  /** Let the cgroup run again (idempotent). */
  thaw(): void;
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function isV1(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'freezer.state'));
}

function waitUntil(what: string, done: () => boolean): void {
  const t0 = performance.now();
  while (!done()) {
    if (performance.now() - t0 > TIMEOUT_MS) throw new Error(`${what}: not frozen after ${TIMEOUT_MS / 1000} s`);
    sleepMs(POLL_MS);
  }
}

/** Threads of a cgroup and its descendants. */
function listTasks(dir: string, file: string): number[] {
  const out: number[] = [];
  const walk = (d: string) => {
    for (const l of fs.readFileSync(path.join(d, file), 'utf8').split('\n')) if (l) out.push(Number(l));
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  walk(dir);
  return out;
}

/** Whether the thread is in a job-control stop ('T'); false when it is gone. */
function inJobStop(tid: number): boolean {
  try {
    return readStat(tid).state === 'T';
  } catch {
    return false;
  }
}

/** Freeze the cgroup at `dir` (a v1 freezer or v2 cgroup directory). */
export function freezeCgroup(dir: string): FrozenCgroup {
  if (!fs.existsSync(dir)) throw new Error(`freeze cgroup ${dir}: no such cgroup`);
  const v1 = isV1(dir);
  if (!v1 && !fs.existsSync(path.join(dir, 'cgroup.freeze'))) throw new Error(`freeze cgroup ${dir}: neither a v1 freezer nor a v2 cgroup`);
  const state = v1 ? path.join(dir, 'freezer.state') : path.join(dir, 'cgroup.freeze');
  const before = fs.readFileSync(state, 'utf8').trim();
  if (before === 'FROZEN' || before === '1') throw new Error(`freeze cgroup ${dir}: already frozen (stasis would not know when to thaw it)`);
  let frozen = true;
  const thaw = () => {
    if (!frozen) return;
    frozen = false;
    fs.writeFileSync(state, v1 ? 'THAWED' : '0');
  };
  const file = v1 ? 'tasks' : 'cgroup.threads';
  const stopped = new Set(listTasks(dir, file).filter(inJobStop));
  try {
    fs.writeFileSync(state, v1 ? 'FROZEN' : '1');
    if (v1) waitUntil(dir, () => fs.readFileSync(state, 'utf8').trim() === 'FROZEN');
    else waitUntil(dir, () => /^frozen 1$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8')));
    const tasks = listTasks(dir, file);
    // A v2-frozen task still shows its job-control stop: one that stopped just before the freeze.
    if (!v1) for (const tid of tasks) if (inJobStop(tid)) stopped.add(tid);
    return { tasks, stopped, thaw };
  } catch (e) {
    thaw();
    throw e;
  }
}
