// /proc/PID/timers (fs/proc/base.c show_timer): the POSIX timers of a process, four lines each:
//   ID: 0
//   signal: 10/0000000000000000      signo / sigev_value (hex pointer)
//   notify: signal/pid.3060          none|signal|thread, then tid (SIGEV_THREAD_ID) or pid
//   ClockID: 1
// The armed time is not here: the parasite reads it with timer_gettime.
import { type ProcPid, dec, hexBig, lines, malformed, procPath, readProcText } from './read.js';

export interface PosixTimer {
  id: number;
  signo: number;
  /** sigev_value (sival_ptr / sival_int) as the task registered it. */
  sigval: bigint;
  /** How expiry is announced: SIGEV_NONE, SIGEV_SIGNAL or SIGEV_THREAD as `none`/`signal`/`thread`. */
  notify: string;
  /** `tid` when SIGEV_THREAD_ID was set (the signal goes to one thread), else `pid`. */
  notifyTarget: 'pid' | 'tid';
  /** The target pid/tid in the reader's pid namespace. */
  notifyPid: number;
  clockId: number;
}

export function parseTimers(text: string, path = 'timers'): PosixTimer[] {
  const out: PosixTimer[] = [];
  let cur: Partial<PosixTimer> | undefined;
  const finish = (lineNo: number) => {
    if (!cur) return;
    if (cur.signo === undefined || cur.notify === undefined || cur.clockId === undefined) {
      throw malformed(path, lineNo, `timer ${cur.id} is missing signal:, notify: or ClockID:`);
    }
    out.push(cur as PosixTimer);
  };
  const all = lines(text);
  all.forEach((line, i) => {
    const where = [path, i + 1, line] as const;
    const m = /^([A-Za-z]+):\s*(.*)$/.exec(line);
    if (!m) throw malformed(path, i + 1, 'expected "Key: value"', line);
    const [, key, value] = m as unknown as [string, string, string];
    if (key === 'ID') {
      finish(i);
      cur = { id: dec(value, 'ID', where) };
      return;
    }
    if (!cur) throw malformed(path, i + 1, 'field before the first ID:', line);
    if (key === 'signal') {
      const s = /^(\d+)\/([0-9a-f]+)$/.exec(value);
      if (!s) throw malformed(path, i + 1, 'signal is not "signo/value"', line);
      cur.signo = dec(s[1]!, 'signo', where);
      cur.sigval = hexBig(s[2]!, 'sigval', where);
    } else if (key === 'notify') {
      const s = /^([a-z?]+)\/(pid|tid)\.(-?\d+)$/.exec(value);
      if (!s) throw malformed(path, i + 1, 'notify is not "kind/pid.N" or "kind/tid.N"', line);
      cur.notify = s[1]!;
      cur.notifyTarget = s[2] as 'pid' | 'tid';
      cur.notifyPid = dec(s[3]!, 'notify pid', where);
    } else if (key === 'ClockID') {
      cur.clockId = dec(value, 'ClockID', where);
    }
  });
  finish(all.length);
  return out;
}

/** `/proc/PID/timers` (needs CONFIG_CHECKPOINT_RESTORE). */
export function readTimers(pid: ProcPid): PosixTimer[] {
  const path = procPath(pid, 'timers');
  return parseTimers(readProcText(path), path);
}
