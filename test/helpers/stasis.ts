// Running the stasis command the way users do, and the bookkeeping tests need around it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { ExecutionContext } from 'ava';
import { repoRoot } from './paths.js';
import { underReaper, type Workload } from '../../test-containers/launch.js';

export const stasisBin = path.join(repoRoot, 'bin/stasis');

export async function stasis(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
  return execa(process.execPath, [stasisBin, ...args], { reject: false, all: true, env: opts.env });
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

export function killPid(pid: number): void {
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
  extra: string[] = []): Promise<Workload> {
  const w = await underReaper([process.execPath, stasisBin, 'restore', '-d', '-D', dir,
    '--inherit-fd', `fd[1]:${key}`, ...extra]);
  t.teardown(async () => {
    killPid(restoredPid);
    await w.kill();
  });
  return w;
}

export function lastTick(lines: readonly string[]): number {
  const ticks = lines.filter((l) => l.startsWith('tick '));
  return ticks.length ? Number(ticks[ticks.length - 1]!.split(' ')[1]) : 0;
}
