// /proc/PID/status and /proc/PID/task/TID/status (fs/proc/array.c proc_pid_status): the
// "Key:\tvalue" file CRIU reads while seizing (state, signal masks, credentials, seccomp).
import {
  type ProcPid, dec, hexBig, malformed, oct, procPath, readProcText, udec,
} from './read.js';

export interface ProcStatus {
  /** `Name:`, the comm, with the kernel's \n and \\ escapes undone. */
  name: string;
  /** The state letter: R S D T t Z X I (P, W, K on old kernels). */
  state: string;
  /** The words after the letter, e.g. `sleeping`. */
  stateName: string;
  /** `Umask:` (kernel ≥ 4.7). */
  umask?: number;
  tgid: number;
  pid: number;
  ppid: number;
  tracerPid: number;
  /** real, effective, saved, filesystem */
  uid: [number, number, number, number];
  gid: [number, number, number, number];
  /** `Groups:` supplementary groups. */
  groups: number[];
  /** The pid in each pid namespace from the outermost (as seen by the reader) to the task's own.
   *  Falls back to [pid] when the kernel has no NSpid line. The same for NStgid/NSpgid/NSsid. */
  nsPid: number[];
  nsTgid: number[];
  nsPgid: number[];
  nsSid: number[];
  threads: number;
  /** `SigQ: queued/limit`: signals queued for the real uid and RLIMIT_SIGPENDING. */
  sigQueued: number;
  sigQueueLimit: number;
  /** Signal masks, bit N-1 for signal N. */
  sigPnd: bigint;
  shdPnd: bigint;
  sigBlk: bigint;
  sigIgn: bigint;
  sigCgt: bigint;
  /** Capability sets, bit N for capability N. CapAmb is 0 on kernels without ambient caps. */
  capInh: bigint;
  capPrm: bigint;
  capEff: bigint;
  capBnd: bigint;
  capAmb: bigint;
  noNewPrivs: number;
  /** 0 disabled, 1 strict, 2 filter. */
  seccomp: number;
  /** Number of attached seccomp filters (kernel ≥ 5.9; 0 when absent). */
  seccompFilters: number;
  /** `THP_enabled:` (kernel ≥ 5.0): 0 when the process set PR_SET_THP_DISABLE (or the kernel has no THP). */
  thpEnabled?: boolean;
  /** Every line, raw, for fields not decoded above. */
  raw: Map<string, string>;
}

/** `Name:` escapes '\n' as "\n" and '\\' as "\\" (proc_task_name, escape=true). */
function unescapeName(s: string): string {
  return s.replace(/\\(n|\\)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
}

/** Parses the text of a status file; `path` names it in errors. */
export function parseStatus(text: string, path = 'status'): ProcStatus {
  const raw = new Map<string, string>();
  for (let at = 0, n = 1; at < text.length; n++) {
    let eol = text.indexOf('\n', at);
    if (eol < 0) eol = text.length;
    const colon = text.indexOf(':', at);
    if (colon <= at || colon > eol) throw malformed(path, n, 'expected "Key:\\tvalue"', text.slice(at, eol));
    const value = text.charCodeAt(colon + 1) === 0x09 ? colon + 2 : colon + 1;
    raw.set(text.slice(at, colon), text.slice(value, eol));
    at = eol + 1;
  }
  // Line numbers only for an error message.
  const lineOf = (key: string): number | undefined => {
    if (text.startsWith(`${key}:`)) return 1;
    const at = text.indexOf(`\n${key}:`);
    return at < 0 ? undefined : text.slice(0, at + 1).split('\n').length;
  };
  const where = (key: string) => () => [path, lineOf(key), `${key}:\t${raw.get(key)}`] as const;
  const need = (key: string): string => {
    const v = raw.get(key);
    if (v === undefined) throw malformed(path, undefined, `no ${key}: line`);
    return v;
  };
  const num = (key: string) => dec(need(key).trim(), key, where(key));
  const optNum = (key: string, dflt: number) => (raw.has(key) ? num(key) : dflt);
  const mask = (key: string) => hexBig(need(key).trim(), key, where(key));
  const list = (key: string, dflt: number[]) => {
    if (!raw.has(key)) return dflt;
    return need(key).split(/\s+/).filter((s) => s !== '').map((s) => dec(s, key, where(key)));
  };
  const ids = (key: string): [number, number, number, number] => {
    const v = list(key, []);
    if (v.length !== 4) throw malformed(path, lineOf(key), `${key} needs 4 values`, raw.get(key));
    return [v[0]!, v[1]!, v[2]!, v[3]!];
  };

  const stateText = need('State');
  const sm = /^(\S)(?: \((.*)\))?$/.exec(stateText.trim());
  if (!sm) throw malformed(path, lineOf('State'), 'State is not "X (name)"', stateText);

  const sigq = /^(\d+)\/(\d+)$/.exec(need('SigQ').trim());
  if (!sigq) throw malformed(path, lineOf('SigQ'), 'SigQ is not "queued/limit"', raw.get('SigQ'));

  const pid = num('Pid');
  const tgid = num('Tgid');
  return {
    name: unescapeName(need('Name')),
    state: sm[1]!,
    stateName: sm[2] ?? '',
    ...(raw.has('Umask') ? { umask: oct(need('Umask').trim(), 'Umask', where('Umask')) } : {}),
    tgid,
    pid,
    ppid: num('PPid'),
    tracerPid: num('TracerPid'),
    uid: ids('Uid'),
    gid: ids('Gid'),
    groups: list('Groups', []),
    nsPid: list('NSpid', [pid]),
    nsTgid: list('NStgid', [tgid]),
    nsPgid: list('NSpgid', []),
    nsSid: list('NSsid', []),
    threads: num('Threads'),
    sigQueued: udec(sigq[1]!, 'SigQ', where('SigQ')),
    sigQueueLimit: udec(sigq[2]!, 'SigQ', where('SigQ')),
    sigPnd: mask('SigPnd'),
    shdPnd: mask('ShdPnd'),
    sigBlk: mask('SigBlk'),
    sigIgn: mask('SigIgn'),
    sigCgt: mask('SigCgt'),
    capInh: mask('CapInh'),
    capPrm: mask('CapPrm'),
    capEff: mask('CapEff'),
    capBnd: mask('CapBnd'),
    capAmb: raw.has('CapAmb') ? mask('CapAmb') : 0n,
    noNewPrivs: optNum('NoNewPrivs', 0),
    seccomp: optNum('Seccomp', 0),
    seccompFilters: optNum('Seccomp_filters', 0),
    ...(raw.has('THP_enabled') ? { thpEnabled: optNum('THP_enabled', 1) !== 0 } : {}),
    raw,
  };
}

/** `/proc/PID/status`, or `/proc/PID/task/TID/status` when `tid` is given. */
export function readStatus(pid: ProcPid, tid?: number): ProcStatus {
  const path = tid === undefined ? procPath(pid, 'status') : procPath(pid, 'task', tid, 'status');
  return parseStatus(readProcText(path), path);
}

/** Only the SigIgn mask of `/proc/PID/status`, without parsing the rest. */
export function readSigIgn(pid: ProcPid): bigint {
  const path = procPath(pid, 'status');
  const m = /^SigIgn:\s*([0-9a-f]+)$/m.exec(readProcText(path));
  if (!m) throw malformed(path, undefined, 'no SigIgn: line');
  return BigInt(`0x${m[1]}`);
}
