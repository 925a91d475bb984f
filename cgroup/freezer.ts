// Freezing a container's cgroup for the moment it takes to seize its tasks (runc's
// freeze_cgroup). A frozen cgroup cannot fork, so the list of its tasks is final: each is
// seized and interrupted while frozen, the cgroup is thawed at once, and every task stops in
// its ptrace interrupt on the way out of the freezer — before it runs a single instruction.
//
// cgroup v1: `freezer.state` (write FROZEN / THAWED, read until FROZEN); v2: `cgroup.freeze`
// (write 1 / 0) and `cgroup.events` ("frozen 1"). The state is read again every 0.2 ms rather than
// criu's 100 ms step: freezing a handful of tasks takes well under a millisecond.
//
// A cgroup that was frozen already (`runc pause`; CRI-O freezes it itself before a checkpoint)
// is seized the same way, thawed only for its tasks to reach their ptrace stops, and frozen
// again before they are let go: it is left frozen, as it was found.
//
// A guardian keeps that promise if stasis dies in between (SIGKILL, the OOM killer, a crash):
// a small shell started before the first change, reading a pipe whose other end only stasis
// holds. When the pipe closes without stasis having said it is done, the guardian writes the
// state the cgroup had back into it.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pipe } from '../sys/native.js';
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
  /** The cgroup was frozen before stasis came: it is frozen again by restore(). */
  wasFrozen: boolean;
  /** Let the cgroup run (idempotent); its tasks must be seized first if it was frozen before. */
  thaw(): void;
  /**
   * Put the cgroup back as it was found and dismiss the guardian: frozen again if it was frozen
   * (its tasks, ptrace-stopped, freeze where they stand), else thawed. Idempotent.
   */
  restore(): void;
}

const O_CLOEXEC = 0o2000000;

/**
 * The guardian (see the top of this file): `sh` reading its standard input, a pipe. Lines are
 * "VALUE FILE" (write VALUE into FILE if stasis vanishes) or "done" (nothing to do); at the end of
 * the input the last line is acted on. Returns how to tell it.
 */
function startGuardian(): { say(line: string): void; dismiss(): void; readonly active: boolean } {
  const [r, w] = pipe(O_CLOEXEC);
  const script = 'last=; while IFS= read -r l; do last=$l; done; ' +
    'case $last in ""|done) ;; *) printf %s "${last%% *}" > "${last#* }";; esac';
  try {
    const child = spawn('/bin/sh', ['-c', script], { stdio: [r, 'ignore', 'ignore'], detached: true });
    child.on('error', () => {});
    child.unref();
  } finally {
    fs.closeSync(r);
  }
  let open = true;
  return {
    say(line: string) {
      if (open) fs.writeSync(w, `${line}\n`);
    },
    /** Nothing left to guard: "done", and the pipe closed (idempotent). */
    dismiss() {
      if (!open) return;
      open = false;
      try {
        fs.writeSync(w, 'done\n');
      } finally {
        fs.closeSync(w);
      }
    },
    get active() {
      return open;
    },
  };
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function isV1(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'freezer.state'));
}

function waitUntil(what: string, done: () => boolean, timeoutMs = TIMEOUT_MS): void {
  const t0 = performance.now();
  while (!done()) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not frozen after ${timeoutMs / 1000} s`);
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

/**
 * Freeze the cgroup at `dir` (a v1 freezer or v2 cgroup directory), or take it as it is when it
 * is frozen already; waiting for it to freeze at most `timeoutMs` (10 s by default).
 */
export function freezeCgroup(dir: string, timeoutMs = TIMEOUT_MS): FrozenCgroup {
  if (!fs.existsSync(dir)) throw new Error(`freeze cgroup ${dir}: no such cgroup`);
  const v1 = isV1(dir);
  if (!v1 && !fs.existsSync(path.join(dir, 'cgroup.freeze'))) throw new Error(`freeze cgroup ${dir}: neither a v1 freezer nor a v2 cgroup`);
  const state = v1 ? path.join(dir, 'freezer.state') : path.join(dir, 'cgroup.freeze');
  const before = fs.readFileSync(state, 'utf8').trim();
  const wasFrozen = before === 'FROZEN' || before === 'FREEZING' || before === '1';
  const FROZEN = v1 ? 'FROZEN' : '1';
  const THAWED = v1 ? 'THAWED' : '0';
  const waitFrozen = () => {
    if (v1) waitUntil(dir, () => fs.readFileSync(state, 'utf8').trim() === 'FROZEN', timeoutMs);
    else waitUntil(dir, () => /^frozen 1$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8')), timeoutMs);
  };
  const guardian = startGuardian();
  // What the cgroup must be if stasis vanishes from here on: as it was found.
  guardian.say(`${wasFrozen ? FROZEN : THAWED} ${state}`);
  let frozen = true;
  const thaw = () => {
    if (!frozen) return;
    frozen = false;
    fs.writeFileSync(state, THAWED);
    if (!wasFrozen) guardian.dismiss(); // as it was found: nothing left to guard
  };
  // Once the guardian is dismissed, the cgroup is as it was found.
  const restore = () => {
    if (!guardian.active) return;
    try {
      if (wasFrozen) {
        fs.writeFileSync(state, FROZEN);
        frozen = true;
        waitFrozen();
      } else {
        thaw();
      }
    } finally {
      guardian.dismiss();
    }
  };
  const file = v1 ? 'tasks' : 'cgroup.threads';
  try {
    // A frozen v1 task shows as 'D', hiding a job-control stop: read before freezing (a cgroup
    // found frozen cannot be told; its tasks count as running).
    const stopped = new Set(wasFrozen ? [] : listTasks(dir, file).filter(inJobStop));
    if (!wasFrozen) fs.writeFileSync(state, FROZEN);
    waitFrozen(); // (a cgroup found FREEZING: until it is frozen)
    const tasks = listTasks(dir, file);
    // A v2-frozen task still shows its job-control stop: one that stopped just before the freeze.
    if (!v1) for (const tid of tasks) if (inJobStop(tid)) stopped.add(tid);
    return { tasks, stopped, wasFrozen, thaw, restore };
  } catch (e) {
    restore();
    throw e;
  }
}
