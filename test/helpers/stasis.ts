// Running the stasis command the way users do, and the bookkeeping tests need around it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { ExecutionContext } from 'ava';
import { repoRoot } from './paths.js';
import { descendsFromUs, startWorkload as underReaperWorkload, underReaper, type Workload } from '../../test-containers/launch.js';
import { RuncContainer, type Output } from '../../test-containers/runc.js';
import { restoredFdDifferences, settledSnapshot, type CompareOptions, type TreeFds } from '../../test-containers/fds.js';

export const stasisBin = path.join(repoRoot, 'bin/stasis');

/** The value of option `names` in a command line (`-D DIR`, `--images-dir=DIR`). */
function optionValue(args: readonly string[], ...names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (names.includes(args[i]!)) return args[i + 1];
    const eq = names.find((n) => n.startsWith('--') && args[i]!.startsWith(`${n}=`));
    if (eq) return args[i]!.slice(eq.length + 1);
  }
  return undefined;
}

/**
 * The descriptors of every tree dumped successfully through these helpers, by images directory
 * (taken just before the dump): a restore from there is compared with them (test-containers/fds.ts).
 */
const dumpedFds = new Map<string, TreeFds>();

/** Snapshot the tree `stasis ARGS` (or another dumper's) is about to dump, if ARGS is a dump. */
export function beforeDump(args: readonly string[]): TreeFds | undefined {
  const pid = args[0] === 'dump' ? optionValue(args, '-t', '--tree') : undefined;
  if (pid === undefined) return undefined;
  try {
    return settledSnapshot(Number(pid));
  } catch {
    return undefined; // no such process: the dump fails, as the test may want
  }
}

/** Record the snapshot of a dump that succeeded, for the restore from its directory to be compared with. */
export function afterDump(args: readonly string[], before: TreeFds | undefined, ok: boolean): void {
  const dir = optionValue(args, '-D', '--images-dir');
  if (before && ok && dir) dumpedFds.set(path.resolve(dir), before);
}

/**
 * What differs in the descriptors of the tree restored from `dir` (its root's PID in
 * `pidfile`) from before its dump; [] when they are the same, or when the dump was not made
 * through these helpers.
 */
export function fdsChangedByRestore(dir: string, rootPid: number, opts: CompareOptions = {}): string[] {
  const before = dumpedFds.get(path.resolve(dir));
  return before ? restoredFdDifferences(before, rootPid, opts) : [];
}

/**
 * Assert the descriptor invariant on the tree restored from `dir` whose root is `rootPid` now:
 * every task dumped has the descriptors it had, with their flags and positions.
 */
export async function assertFdsKept(t: ExecutionContext, dir: string, rootPid: number, opts: CompareOptions = {}): Promise<void> {
  t.true(dumpedFds.has(path.resolve(dir)), `the dump into ${dir} was made through stasis() (its descriptors known)`);
  t.deepEqual(fdsChangedByRestore(dir, rootPid, opts), [], 'every task has its descriptors back with their flags and positions');
}

/**
 * `bin/stasis ARGS` (`extraPipes`: that many more pipes, as its 3, 4, ...). A dump (-t) takes a snapshot of the tree's descriptors first; a successful
 * `restore -d` from a directory dumped so is checked against it (throws on a difference) —
 * through a --pidfile added when ARGS have none.
 */
export async function stasis(args: string[], opts: { env?: NodeJS.ProcessEnv; extraPipes?: number } = {}) {
  const before = beforeDump(args);
  let pidfile = optionValue(args, '--pidfile');
  const restoreD = args[0] === 'restore' && (args.includes('-d') || args.includes('--restore-detached'));
  let temp: string | undefined;
  if (restoreD && pidfile === undefined) {
    temp = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-pidfile-'));
    pidfile = path.join(temp, 'pid');
    args = [...args, '--pidfile', pidfile];
  }
  try {
    const r = await execa(process.execPath, [stasisBin, ...args], {
      reject: false, all: true, env: opts.env,
      // Descriptors 3, 4, ... of stasis, pipes whose output is collected (r.stdio[3], ...).
      stdio: ['pipe', 'pipe', 'pipe', ...new Array<'pipe'>(opts.extraPipes ?? 0).fill('pipe')] as ['pipe', 'pipe', 'pipe', ...'pipe'[]],
    });
    afterDump(args, before, r.exitCode === 0);
    const dir = optionValue(args, '-D', '--images-dir');
    if (restoreD && r.exitCode === 0 && dir) {
      const diffs = fdsChangedByRestore(dir, Number(fs.readFileSync(pidfile!, 'utf8')));
      if (diffs.length) throw new Error(`the restored tree's descriptors differ from the dumped one's: ${diffs.join('; ')}`);
    }
    return r;
  } finally {
    if (temp) fs.rmSync(temp, { recursive: true, force: true });
  }
}

/** A temporary directory removed when the test ends. */
export function tmpDir(t: ExecutionContext, prefix = 'stasis-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The --inherit-fd key of a process's descriptor (e.g. `pipe:[1234]`). */
export function fdKey(pid: number, fd: number): string {
  return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
}

/** SIGKILL to `pid` if it is still a process of this test run (below this process: descendsFromUs). */
export function killPid(pid: number): void {
  if (!descendsFromUs(pid)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

export function alive(pid: number): boolean {
  try {
    const state = /State:\s+(\S)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return state !== undefined && state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * `stasis restore -d` under a reaper, handing the restored process the reaper's pipe as its
 * stdout/stderr (`key` names the pipe the dumped process wrote to). The restored process is
 * killed (by PID) when the test ends.
 */
export async function restoreUnderReaper(t: ExecutionContext, dir: string, key: string, restoredPid: number,
  extra: string[] = [], fdOpts: CompareOptions = {}, tool: string[] = [process.execPath, stasisBin]): Promise<Workload> {
  const pidfile = path.join(tmpDir(t, 'stasis-pidfile-'), 'pid');
  const w = await underReaper([...tool, 'restore', '-d', '-D', dir,
    '--inherit-fd', `fd[1]:${key}`, '--pidfile', pidfile, ...extra]);
  t.teardown(async () => {
    killPid(restoredPid);
    await w.kill();
  });
  // The descriptor invariant, once the restore is done (a failed one is the test's to report):
  // stasis's own dumps and restores (CRIU adds O_LARGEFILE to what it restores).
  if (tool[1] === stasisBin && await w.exitOf(w.pid, 60_000).then((l) => l === `exit ${w.pid} 0`, () => false)) {
    await assertFdsKept(t, dir, Number(fs.readFileSync(pidfile, 'utf8')), fdOpts);
  }
  return w;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits for PIDs a restore needs to be free: a killed tree's processes until their reaper has
 * reaped them, or (once the machine's PID counter has wrapped) a short-lived process of a test
 * running beside this one.
 */
export async function waitForFreePids(pids: readonly number[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const taken = pids.find((pid) => fs.existsSync(`/proc/${pid}`));
    if (taken === undefined) return;
    if (Date.now() > deadline) throw new Error(`PID ${taken}, which the restore needs, is taken on this machine`);
    await sleep(20);
  }
}

export function lastTick(lines: readonly string[]): number {
  const ticks = lines.filter((l) => l.startsWith('tick '));
  return ticks.length ? Number(ticks[ticks.length - 1]!.split(' ')[1]) : 0;
}

export interface SelfCheck {
  /** Images directory. */
  dir: string;
  /** The workload's own work directory (where `check` is created). */
  work: string;
  /** The original workload (dumped, killed) and the restore under its reaper. */
  w: Workload;
  r: Workload;
}

/**
 * The cycle every self-checking workload goes through: start it with a fresh work directory,
 * wait for its `ready` line, dump it (it is killed), optionally look at the images, restore it
 * under a reaper with its stdout handed over, create WORK/check, and wait for its `result`.
 * Asserts that dump and restore succeed, that no `FAIL` line was printed, that the result is
 * PASS and that the restored process exits 0.
 */
export async function selfCheckRoundTrip(t: ExecutionContext, workload: string, opts: {
  args?: (work: string) => string[];
  dumpArgs?: string[];
  restoreArgs?: string[];
  /** Another dumper or restorer than stasis (CRIU's binary, for interop): its argv start. */
  dumpTool?: string[];
  restoreTool?: string[];
  ready?: RegExp;
  afterReady?: (w: Workload, line: string) => void;
  afterDump?: (dir: string, w: Workload) => Promise<void>;
  /** Called once the restored process runs, before WORK/check is made. */
  afterRestore?: (r: Workload) => Promise<void> | void;
} = {}): Promise<SelfCheck> {
  const dir = tmpDir(t);
  const work = tmpDir(t, `stasis-${workload}-`);
  const w = await underReaperWorkload(workload, (opts.args ?? ((d) => [d]))(work));
  t.teardown(() => w.kill());
  const line = await w.waitForLine(opts.ready ?? /^ready\b/);
  opts.afterReady?.(w, line);
  const key = fdKey(w.pid, 1);
  const dumpArgs = ['dump', '-t', String(w.pid), '-D', dir, ...(opts.dumpArgs ?? [])];
  let d;
  if (opts.dumpTool) {
    const before = beforeDump(dumpArgs); // the same descriptor check as stasis's own dumps get
    d = await execa(opts.dumpTool[0]!, [...opts.dumpTool.slice(1), ...dumpArgs], { reject: false, all: true });
    afterDump(dumpArgs, before, d.exitCode === 0);
  } else {
    d = await stasis(dumpArgs);
  }
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  await opts.afterDump?.(dir, w);
  const r = await restoreUnderReaper(t, dir, key, w.pid, opts.restoreArgs, {}, opts.restoreTool);
  t.is(await r.exitOf(r.pid), `exit ${r.pid} 0`, r.lines.join('\n'));
  await opts.afterRestore?.(r);
  fs.writeFileSync(path.join(work, 'check'), '');
  await r.waitForLine(/^result /, 20_000);
  t.deepEqual(r.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(r.lines.includes('result PASS'), r.lines.join('\n'));
  t.is(await r.exitOf(w.pid), `exit ${w.pid} 0`, 'the restored process checked itself and exited 0');
  return { dir, work, w, r };
}

/** The last lines of a log stasis wrote, for failure messages. */
function logTail(file: string, lines = 8): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join(' | ');
  } catch {
    return `(no ${path.basename(file)})`;
  }
}

export interface ContainerSelfCheck {
  /** The bundle's directory of this test (images in DIR/img, runc's work dirs beside). */
  dir: string;
  /** The workload's work directory as the host sees it (/data in the container). */
  work: string;
  c: RuncContainer;
  /** What the first container and the restored one printed. */
  out: Output;
  restored: Output;
}

/**
 * The same cycle as selfCheckRoundTrip, as a container runtime does it: the workload (linked
 * statically) is a runc container's process — new pid, mount, network, IPC and UTS namespaces,
 * its root a bundle's rootfs, its work directory /data, privileged — checkpointed with `runc
 * --criu stasis checkpoint` (which kills it) and restored with `runc --criu stasis restore`
 * (stasis given --root). Asserts the same as selfCheckRoundTrip. The container is deleted (by
 * id) at the end.
 */
export async function selfCheckInContainer(t: ExecutionContext, workload: string, opts: {
  args?: string[];
  ready?: RegExp;
  /** Called with the bundle's rootfs before the container starts (files the workload needs). */
  prepare?: (rootfs: string) => void;
  /** More `runc checkpoint` options (e.g. --file-locks), and `runc restore` options. */
  checkpointArgs?: string[];
  restoreArgs?: string[];
  /** Changes to the bundle's config.json before the container runs. */
  configure?: (config: Record<string, any>) => void;
  /** Called with the container's `ready` line (and its output so far). */
  afterReady?: (line: string, out: Output) => Promise<void> | void;
  afterDump?: (imagesDir: string) => Promise<void>;
  /** Changes to config.json between checkpoint and restore (another host's namespaces...). */
  beforeRestore?: (config: Record<string, any>) => Promise<void> | void;
  /** Called once the container is restored, before /data/check is made. */
  afterRestore?: () => Promise<void> | void;
} = {}): Promise<ContainerSelfCheck> {
  const dir = tmpDir(t, `stasis-${workload}-ct-`);
  const c = RuncContainer.create(dir);
  t.teardown(() => c.destroy());
  const rootfs = path.join(c.bundle, 'rootfs');
  c.withWorkload(workload, ['/data', ...(opts.args ?? [])]).privileged();
  opts.prepare?.(rootfs);
  const configFile = path.join(c.bundle, 'config.json');
  const editConfig = async (fn: (config: Record<string, any>) => Promise<void> | void) => {
    const config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    await fn(config);
    fs.writeFileSync(configFile, JSON.stringify(config, null, 2));
  };
  if (opts.configure) await editConfig(opts.configure);
  const out = await c.run();
  const readyLine = await out.waitForLine(opts.ready ?? /^ready\b/);
  await opts.afterReady?.(readyLine, out);
  const images = path.join(dir, 'img');
  const ck = c.checkpoint(stasisBin, images, path.join(dir, 'work'), opts.checkpointArgs);
  t.is(ck.code, 0, `runc checkpoint: ${ck.stderr} ${logTail(path.join(dir, 'work', 'dump.log'))}`);
  await out.closed;
  await opts.afterDump?.(images);
  if (opts.beforeRestore) await editConfig(opts.beforeRestore);
  const { code, out: restored } = await c.restore(stasisBin, images, path.join(dir, 'rwork'), opts.restoreArgs);
  t.is(code, 0, `runc restore: ${restored.lines.join(' | ')} ${logTail(path.join(dir, 'rwork', 'restore.log'))}`);
  await opts.afterRestore?.();
  const work = path.join(rootfs, 'data');
  fs.writeFileSync(path.join(work, 'check'), '');
  await restored.waitForLine(/^result /, 20_000);
  t.deepEqual(restored.lines.filter((l) => l.startsWith('FAIL')), []);
  t.true(restored.lines.includes('result PASS'), restored.lines.join('\n'));
  await restored.closed;
  // runc may see it running a moment longer than its output lasts.
  const until = Date.now() + 5000;
  while ((c.state()?.status ?? 'stopped') !== 'stopped' && Date.now() < until) await sleep(20);
  t.is(c.state()?.status ?? 'stopped', 'stopped', 'the restored workload checked itself and exited');
  return { dir, work, c, out, restored };
}

/** A counter workload (workloads/counter.c, `mode` its way of sleeping) dumped, and so killed, into a fresh directory. */
export async function dumpedCounter(t: ExecutionContext, mode = 'nanosleep'): Promise<{ dir: string; pid: number; key: string }> {
  const dir = tmpDir(t);
  const w = await underReaperWorkload('counter', [mode, '20']);
  t.teardown(() => w.kill());
  await w.waitForLine(/^tick 1$/);
  const key = fdKey(w.pid, 1);
  const d = await stasis(['dump', '-t', String(w.pid), '-D', dir]);
  t.is(d.exitCode, 0, d.all);
  await w.exitOf(w.pid);
  return { dir, pid: w.pid, key };
}

/** The tracer of `pid` (0 when untraced or gone), as /proc says. */
export function tracerOf(pid: number): number {
  try {
    return Number(/^TracerPid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
