// Small one-value files: personality, loginuid, oom_score_adj, comm, and the cwd/root/exe links.
import { type ProcPid, dec, hex, malformed, procPath, readProcLink, readProcText, udec } from './read.js';

function oneLine(path: string): string {
  const text = readProcText(path);
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/** `/proc/PID/personality` (hex, e.g. 00000000; ADDR_NO_RANDOMIZE is 0x0040000). Needs ptrace access. */
export function readPersonality(pid: ProcPid): number {
  const path = procPath(pid, 'personality');
  const v = oneLine(path).trim();
  return hex(v, 'personality', [path, 1, v]);
}

/** The loginuid value meaning "not set" ((uid_t)-1). */
export const LOGINUID_UNSET = 0xffffffff;

/** `/proc/PID/loginuid` (audit login uid; LOGINUID_UNSET when never set). */
export function readLoginuid(pid: ProcPid): number {
  const path = procPath(pid, 'loginuid');
  const v = oneLine(path).trim();
  return udec(v, 'loginuid', [path, 1, v]);
}

/** `/proc/PID/oom_score_adj` (-1000..1000). */
export function readOomScoreAdj(pid: ProcPid): number {
  const path = procPath(pid, 'oom_score_adj');
  const v = oneLine(path).trim();
  const n = dec(v, 'oom_score_adj', [path, 1, v]);
  if (n < -1000 || n > 1000) throw malformed(path, 1, 'oom_score_adj out of -1000..1000', v);
  return n;
}

/** RLIM_INFINITY, as /proc/PID/limits writes "unlimited". */
export const RLIM_INFINITY = (1n << 64n) - 1n;

/**
 * `/proc/PID/limits`: soft and hard value of each resource limit, in RLIMIT_* order (the
 * kernel lists them so). Readable with ptrace access alone: prlimit() on another process also
 * wants its uids and gids to be the reader's, or CAP_SYS_RESOURCE.
 */
export function readLimits(pid: ProcPid): { cur: bigint; max: bigint }[] {
  const path = procPath(pid, 'limits');
  const rows = readProcText(path).split('\n');
  const out: { cur: bigint; max: bigint }[] = [];
  const value = (v: string | undefined, lineNo: number, line: string) => {
    if (v === 'unlimited') return RLIM_INFINITY;
    if (v === undefined || !/^\d+$/.test(v)) throw malformed(path, lineNo, 'not a limit value', line);
    return BigInt(v);
  };
  // "Max cpu time              unlimited            unlimited            seconds": the name
  // takes the first 26 columns, then soft, hard and unit separated by spaces.
  for (let i = 1; i < rows.length; i++) {
    const line = rows[i]!;
    if (!line.trim()) continue;
    const [soft, hard] = line.slice(26).trim().split(/\s+/);
    out.push({ cur: value(soft, i + 1, line), max: value(hard, i + 1, line) });
  }
  return out;
}

/** `/proc/PID/comm` (or task/TID/comm), without the trailing newline. */
export function readComm(pid: ProcPid, tid?: number): string {
  return oneLine(tid === undefined ? procPath(pid, 'comm') : procPath(pid, 'task', tid, 'comm'));
}

/** `/proc/PID/cwd` target (its working directory as the reader sees it). */
export function readCwd(pid: ProcPid): string {
  return readProcLink(procPath(pid, 'cwd'));
}

/** `/proc/PID/root` target (its root directory, `/` unless chrooted or in another mount ns). */
export function readRoot(pid: ProcPid): string {
  return readProcLink(procPath(pid, 'root'));
}

/** `/proc/PID/exe` target (may end in " (deleted)"; absent for kernel threads). */
export function readExe(pid: ProcPid): string {
  return readProcLink(procPath(pid, 'exe'));
}
