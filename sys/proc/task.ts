// The process tree as /proc shows it: threads (`/proc/PID/task/`) and children
// (`/proc/PID/task/TID/children`, kernel ≥ 3.5 with CONFIG_PROC_CHILDREN). A child is listed under
// the thread that forked it, so a process's children are the union over its threads.
import { type ProcPid, ProcError, dec, procPath, readProcDir, readProcText } from './read.js';

/** The thread ids of a process, ascending (the thread-group leader is among them). */
export function listThreads(pid: ProcPid): number[] {
  const path = procPath(pid, 'task');
  return readProcDir(path).map((n) => dec(n, 'tid', [path, undefined, n])).sort((a, b) => a - b);
}

/** Parses a children file: pids separated by spaces. */
export function parseChildren(text: string, path = 'children'): number[] {
  return text.split(/\s+/).filter((s) => s !== '').map((s) => dec(s, 'child pid', [path, 1, text]));
}

/** The children forked by one thread (`/proc/PID/task/TID/children`). */
export function readTaskChildren(pid: ProcPid, tid: number): number[] {
  const path = procPath(pid, 'task', tid, 'children');
  return parseChildren(readProcText(path), path);
}

/**
 * The children of a process, over all its threads, ascending. A thread that exits between the
 * listing and the read is skipped; the process itself vanishing is an error. `threads`: the
 * process's threads when the caller has them (a frozen process's cannot change).
 */
export function readChildren(pid: ProcPid, threads?: readonly number[]): number[] {
  const out = new Set<number>();
  for (const tid of threads ?? listThreads(pid)) {
    try {
      for (const c of readTaskChildren(pid, tid)) out.add(c);
    } catch (err) {
      if (err instanceof ProcError && err.code === 'ESRCH' && tid !== pid) {
        readProcDir(procPath(pid, 'task')); // rethrows ESRCH if the whole process is gone
        continue;
      }
      throw err;
    }
  }
  return [...out].sort((a, b) => a - b);
}
