// /proc/PID/stat and /proc/PID/task/TID/stat (fs/proc/array.c do_task_stat): one line of
// space-separated fields. Field 2 is "(comm)" printed raw, so it may hold spaces, parentheses and
// even a newline: the line is split at the LAST ')'. Addresses and 64-bit masks are bigint.
import { type ProcPid, dec, decBig, malformed, procPath, readProcText } from './read.js';

export interface ProcStat {
  pid: number;
  /** The comm, raw (up to 15 bytes). */
  comm: string;
  /** R S D T t Z X I ... */
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  ttyNr: number;
  tpgid: number;
  /** PF_* flags of the task. */
  flags: number;
  minflt: bigint;
  cminflt: bigint;
  majflt: bigint;
  cmajflt: bigint;
  /** Clock ticks. */
  utime: bigint;
  stime: bigint;
  cutime: bigint;
  cstime: bigint;
  priority: number;
  nice: number;
  numThreads: number;
  itrealvalue: number;
  /** Clock ticks since boot. */
  startTime: bigint;
  vsize: bigint;
  rss: bigint;
  rsslim: bigint;
  /** mm addresses: 0 when the reader lacks ptrace access to the task (the kernel hides them). */
  startCode: bigint;
  endCode: bigint;
  startStack: bigint;
  kstkEsp: bigint;
  kstkEip: bigint;
  /** Obsolete decimal signal masks (status has the real ones). */
  signal: bigint;
  blocked: bigint;
  sigignore: bigint;
  sigcatch: bigint;
  wchan: bigint;
  nswap: bigint;
  cnswap: bigint;
  exitSignal: number;
  processor: number;
  rtPriority: number;
  policy: number;
  delayacctBlkioTicks: bigint;
  guestTime: bigint;
  cguestTime: bigint;
  startData: bigint;
  endData: bigint;
  startBrk: bigint;
  argStart: bigint;
  argEnd: bigint;
  envStart: bigint;
  envEnd: bigint;
  /** The wait(2) status of a zombie, 0 otherwise. */
  exitCode: number;
}

/** Fields after comm, in order (field 3 = state onwards), and whether each is a bigint. */
const FIELDS: ReadonlyArray<readonly [keyof ProcStat, 'n' | 'b']> = [
  ['ppid', 'n'], ['pgrp', 'n'], ['session', 'n'], ['ttyNr', 'n'], ['tpgid', 'n'], ['flags', 'n'],
  ['minflt', 'b'], ['cminflt', 'b'], ['majflt', 'b'], ['cmajflt', 'b'], ['utime', 'b'], ['stime', 'b'],
  ['cutime', 'b'], ['cstime', 'b'], ['priority', 'n'], ['nice', 'n'], ['numThreads', 'n'],
  ['itrealvalue', 'n'], ['startTime', 'b'], ['vsize', 'b'], ['rss', 'b'], ['rsslim', 'b'],
  ['startCode', 'b'], ['endCode', 'b'], ['startStack', 'b'], ['kstkEsp', 'b'], ['kstkEip', 'b'],
  ['signal', 'b'], ['blocked', 'b'], ['sigignore', 'b'], ['sigcatch', 'b'], ['wchan', 'b'],
  ['nswap', 'b'], ['cnswap', 'b'], ['exitSignal', 'n'], ['processor', 'n'], ['rtPriority', 'n'],
  ['policy', 'n'], ['delayacctBlkioTicks', 'b'], ['guestTime', 'b'], ['cguestTime', 'b'],
  ['startData', 'b'], ['endData', 'b'], ['startBrk', 'b'], ['argStart', 'b'], ['argEnd', 'b'],
  ['envStart', 'b'], ['envEnd', 'b'], ['exitCode', 'n'],
];

const FIELD_NAMES = FIELDS.map(([name]) => name);
const FIELD_IS_BIG = FIELDS.map(([, kind]) => kind === 'b');
/** The fields after the state: decimal integers, one space apart. */
const ALL_DECIMAL = /^-?\d+(?: -?\d+)*$/;

/** Parses the text of a stat file; `path` names it in errors. */
export function parseStat(text: string, path = 'stat'): ProcStat {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  const open = body.indexOf(' (');
  const close = body.lastIndexOf(')');
  if (open <= 0 || close < open) throw malformed(path, 1, 'no "(comm)" field', body);
  const where = [path, 1, body] as const;
  const tail = body.slice(close + 1).trim();
  const rest = tail.split(' ');
  // Kernels before 3.5 stop after cguest_time; everything CRIU needs is in the full line.
  if (rest.length < FIELDS.length + 1) {
    throw malformed(path, 1, `expected ${FIELDS.length + 3} fields, found ${rest.length + 2}`, body);
  }
  const out: Record<string, unknown> = {
    pid: dec(body.slice(0, open), 'pid', where),
    comm: body.slice(open + 2, close),
    state: rest[0]!,
  };
  // Checked at once, then converted with no check each (a dump reads this file twice per task,
  // in code that runs cold); a field that fails is named by the checking conversions below.
  const numbers = tail.slice(rest[0]!.length + 1);
  const checked = ALL_DECIMAL.test(numbers);
  for (let i = 0; i < FIELD_NAMES.length; i++) {
    const s = rest[i + 1]!;
    const name = FIELD_NAMES[i]!;
    if (!checked) out[name] = FIELD_IS_BIG[i] ? decBig(s, name, where) : dec(s, name, where);
    else if (!FIELD_IS_BIG[i]) out[name] = s.length < 16 ? Number(s) : dec(s, name, where);
    else out[name] = s.length < 16 ? BigInt(Number(s)) : BigInt(s);
  }
  return out as unknown as ProcStat;
}

/** `/proc/PID/stat`. */
export function readStat(pid: ProcPid): ProcStat {
  const path = procPath(pid, 'stat');
  return parseStat(readProcText(path), path);
}

/** `/proc/PID/task/TID/stat`: the same fields for one thread. */
export function readTaskStat(pid: ProcPid, tid: number): ProcStat {
  const path = procPath(pid, 'task', tid, 'stat');
  return parseStat(readProcText(path), path);
}
