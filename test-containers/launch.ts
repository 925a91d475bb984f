// Building and starting the test workloads. Workloads run under `reaper` (a child subreaper), so
// the workload itself is never a child_process of the test: libuv would otherwise swallow its
// ptrace stops, and a killed workload is reaped at once instead of lingering as a zombie.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ProcError, readChildren, readStat } from '../sys/proc/index.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/test-containers
const sourceDir = path.resolve(here, '../../test-containers/workloads');
const binDir = path.join(here, 'bin');

/**
 * Compile workloads/NAME.c (once, or again when the source is newer). Returns the binary path.
 * `static`: linked statically (NAME.static), to run in a container's root with no libraries.
 */
export function buildWorkload(name: string, linking: 'dynamic' | 'static' = 'dynamic'): string {
  const src = path.join(sourceDir, `${name}.c`);
  const out = path.join(binDir, linking === 'static' ? `${name}.static` : name);
  fs.mkdirSync(binDir, { recursive: true });
  const newest = Math.max(...[src, path.join(sourceDir, 'selfcheck.h')].map((f) => fs.statSync(f).mtimeMs));
  const stale = () => !fs.existsSync(out) || fs.statSync(out).mtimeMs < newest;
  if (stale()) {
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync('gcc', ['-O1', '-g', '-Wall', ...(linking === 'static' ? ['-static'] : []), '-o', tmp, src, '-lpthread'], { stdio: 'inherit' });
    // Test files run in parallel processes: one that built the same binary meanwhile may already
    // run a workload from it, which replacing the file would leave mapping a deleted one.
    if (stale()) fs.renameSync(tmp, out);
    else fs.rmSync(tmp, { force: true });
  }
  return out;
}

export interface Workload {
  /** PID of the workload (a child of the reaper, not of this process). */
  pid: number;
  reaper: ChildProcess;
  /** Every line the workload and the reaper have printed so far. */
  lines: string[];
  /** Resolves with the first line matching `re` (already printed or still to come). */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** The reaper's "exit PID CODE" (or "signal PID SIG") line for process `pid`. */
  exitOf(pid: number, timeoutMs?: number): Promise<string>;
  /** Resolves once the reaper has exited and everything it printed is in `lines`. */
  finished: Promise<void>;
  /** SIGKILL the workload (by PID) and wait for the reaper to finish. */
  kill(): Promise<void>;
}

/**
 * Whether process `pid` is below this (test) process. PIDs wrap quickly here (pid_max 32768,
 * thousands of processes per run): a PID noted earlier may since belong to another test's
 * process, which must not be killed.
 */
export function descendsFromUs(pid: number): boolean {
  for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
    if (p === process.pid) return true;
    try {
      p = readStat(p).ppid;
    } catch {
      return false; // gone
    }
  }
  return false;
}

/** Whether process `pid` runs `program` (a real path). */
function runs(pid: number, program: string | undefined): boolean {
  if (program === undefined) return false;
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`) === program;
  } catch {
    return false;
  }
}

/** Every process below `pid`, parents first (none below one that is gone). */
export function descendants(pid: number): number[] {
  let children: number[];
  try {
    children = readChildren(pid);
  } catch (e) {
    if (e instanceof ProcError) return [];
    throw e;
  }
  return children.flatMap((c) => [c, ...descendants(c)]);
}

/** Start a workload binary (built from workloads/) under the reaper. */
export async function startWorkload(name: string, args: string[] = []): Promise<Workload> {
  return underReaper([buildWorkload(name), ...args]);
}

/** Lines read from a stream as they come, and a wait for one matching a pattern. */
export interface LineReader {
  /** Every line read so far. */
  lines: string[];
  /** Resolves with the first line matching `re` (already read or still to come). */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves once the stream has ended and every line is in `lines`. */
  closed: Promise<void>;
}

export function readLines(input: NodeJS.ReadableStream, defaultTimeoutMs = 10_000): LineReader {
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const rl = readline.createInterface({ input });
  const closed = new Promise<void>((resolve) => rl.on('close', () => resolve()));
  rl.on('line', (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.re.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const waitForLine = (re: RegExp, timeoutMs = defaultTimeoutMs): Promise<string> => {
    const seen = lines.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line matching ${re} within ${timeoutMs} ms; got: ${lines.slice(-5).join(' | ')}`)), timeoutMs);
      waiters.push({ re, resolve: (l) => { clearTimeout(timer); resolve(l); } });
    });
  };
  return { lines, waitForLine, closed };
}

/**
 * Run a program on a fresh pseudo-terminal (workloads/onpty.c), under the reaper: what it writes
 * to the terminal arrives in `lines`. `pid` is the terminal holder's; its only child is the program.
 */
export async function onTerminal(argv: string[], env?: NodeJS.ProcessEnv): Promise<Workload> {
  return underReaper([buildWorkload('onpty'), ...argv], env);
}

/**
 * Run any program under the reaper; its stdout and stderr (one pipe) are collected in `lines`
 * along with the reaper's own "pid"/"exit"/"signal" lines. `pid` is the program's PID.
 * `extraFds` are passed on as the program's descriptors 3, 4, ... (e.g. a socket for `swrk 3`).
 */
export async function underReaper(argv: string[], env?: NodeJS.ProcessEnv, extraFds: number[] = []): Promise<Workload> {
  const reaperBin = buildWorkload('reaper');
  const reaper = spawn(reaperBin, argv, { stdio: ['ignore', 'pipe', 'inherit', ...extraFds], env });
  const { lines, waitForLine, closed: finished } = readLines(reaper.stdout!);
  const exited = new Promise<void>((resolve) => reaper.on('exit', () => resolve()));
  const pid = Number((await waitForLine(/^pid \d+$/)).split(' ')[1]);
  const program = path.isAbsolute(argv[0]!) ? fs.realpathSync(argv[0]!) : undefined;
  const exitOf = (p: number, timeoutMs = 10_000): Promise<string> =>
    waitForLine(new RegExp(`^(exit|signal) ${p} \\d+$`), timeoutMs);
  return {
    pid, reaper, lines, waitForLine, exitOf, finished,
    async kill() {
      // The workload's PID (where a restore put it again: below this process, or adopted by
      // init after a detached restore) and everything under the reaper: a tree a failed dump let
      // go on (or a test left running) would otherwise outlive the reaper, adopted by init. The
      // PID only while it is below this process or runs the workload's program: PIDs wrap
      // quickly here, it may be another test's process by now.
      for (const p of [...descendsFromUs(pid) || runs(pid, program) ? [pid] : [], ...descendants(reaper.pid!)]) {
        try { process.kill(p, 'SIGKILL'); } catch { /* already gone */ }
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (reaper.exitCode === null) reaper.kill('SIGKILL');
    },
  };
}
