// /proc/PID/fdinfo/N: the common header (pos, flags, mnt_id, ino) every file has, then lines a
// file kind adds through its show_fdinfo: eventfd (fs/eventfd.c), epoll `tfd:` (fs/eventpoll.c),
// signalfd `sigmask:` (fs/signalfd.c), timerfd (fs/timerfd.c), inotify/fanotify marks
// (fs/notify/fdinfo.c), pidfd `Pid:`/`NSpid:` (kernel/fork.c / fs/pidfs.c), and `lock:` lines
// for locks held on the file (fs/locks.c). Also the fd symlinks and the fd listing.
import {
  type ProcPid, dec, decBig, hex, hexBig, kernelDev, lines, malformed, oct, procPath, readProcDir,
  readProcLink, readProcText, udec,
} from './read.js';

/** `eventfd-count:` (hex), `eventfd-id:` (kernel ≥ 5.2), `eventfd-semaphore:` (kernel ≥ 6.4). */
export interface EventfdInfo {
  count: bigint;
  id?: number;
  semaphore?: boolean;
}

/** One `tfd:` line of an epoll instance: a watched file and its registration. */
export interface EpollTarget {
  /** The target's fd number in the owning process (it may since have been closed or reused). */
  tfd: number;
  /** EPOLLIN | EPOLLOUT | EPOLLET ... as registered. */
  events: number;
  /** The epoll_data the task registered (u64). */
  data: bigint;
  /** f_pos of the target file. */
  pos: bigint;
  /** Inode and kernel dev_t of the target file, to find it when tfd no longer names it. */
  ino: number;
  sdev: number;
  sdevMajor: number;
  sdevMinor: number;
}

/** `sigmask:` of a signalfd: the signals it accepts, bit N-1 for signal N. */
export interface SignalfdInfo {
  sigmask: bigint;
}

/** A timerfd: clock, expirations not yet read, flags given to settime, and the time left. */
export interface TimerfdInfo {
  clockid: number;
  ticks: bigint;
  /** TFD_TIMER_ABSTIME (1) | TFD_TIMER_CANCEL_ON_SET (2), printed in octal. */
  settimeFlags: number;
  /** Time to the next expiry (relative) and the period, as [seconds, nanoseconds]. */
  itValue: [bigint, bigint];
  itInterval: [bigint, bigint];
}

/** A file handle as fdinfo prints it for inotify/fanotify inode marks. */
export interface FileHandle {
  /** `fhandle-bytes:` */
  bytes: number;
  /** `fhandle-type:` */
  type: number;
  /** `f_handle:` decoded from hex. */
  handle: Buffer;
}

/** One `inotify wd:` line: a watch. */
export interface InotifyWatch {
  wd: number;
  ino: number;
  sdev: number;
  sdevMajor: number;
  sdevMinor: number;
  mask: number;
  ignoredMask: number;
  /** Absent when the kernel could not encode a handle for the inode. */
  fhandle?: FileHandle;
}

/** One fanotify mark: on an inode, a mount, or a whole filesystem (superblock). */
export interface FanotifyMark {
  type: 'inode' | 'mount' | 'sb';
  /** For inode marks. */
  ino?: number;
  /** For inode and sb marks. */
  sdev?: number;
  /** For mount marks. */
  mntId?: number;
  mflags: number;
  mask: number;
  ignoredMask: number;
  fhandle?: FileHandle;
}

/** `fanotify flags: event-flags:` plus the marks. */
export interface FanotifyInfo {
  flags: number;
  eventFlags: number;
  marks: FanotifyMark[];
}

/** `Pid:`/`NSpid:` of a pidfd: the pid in the reader's namespace (-1 once reaped, 0 if not visible). */
export interface PidfdInfo {
  pid: number;
  nsPid: number[];
}

/** A `lock:` line (same format as /proc/locks). */
export interface FileLock {
  id: number;
  /** POSIX, FLOCK, OFDLCK, LEASE, DELEG, ACCESS ... */
  type: string;
  /** ADVISORY / MANDATORY for locks, ACTIVE / BREAKING / BREAKER for leases. */
  mode: string;
  /** READ, WRITE, UNLCK ... */
  access: string;
  /** Owner pid in the reader's namespace (-1 for OFD locks and leases). */
  pid: number;
  devMajor: number;
  devMinor: number;
  ino: number;
  start: bigint;
  /** null for EOF (lock to the end of the file). */
  end: bigint | null;
}

export interface FdInfo {
  /** File position. */
  pos: bigint;
  /** O_* open flags (printed in octal), including O_CLOEXEC of this fd. */
  flags: number;
  mntId: number;
  /** Inode number of the file (kernel ≥ 5.12). */
  ino?: number;
  locks: FileLock[];
  eventfd?: EventfdInfo;
  /** `tfd:` lines: empty for other kinds, and for an epoll instance watching nothing. */
  epoll: EpollTarget[];
  signalfd?: SignalfdInfo;
  timerfd?: TimerfdInfo;
  /** `inotify wd:` lines: empty for other kinds, and for an inotify instance without watches. */
  inotify: InotifyWatch[];
  fanotify?: FanotifyInfo;
  pidfd?: PidfdInfo;
  /** Lines not decoded above, raw, for kinds this module does not know (e.g. `tty-index:`). */
  other: string[];
}

// Kind-specific lines are decoded whenever present: an empty epoll or inotify instance prints no
// lines at all, so the kind itself comes from the fd link (`anon_inode:[eventpoll]`), see fdKind().

/** `key:value` pairs of a line like `tfd:  5 events:  1d data: 2a  pos:0 ino:40e sdev:10`. */
function pairs(s: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of s.matchAll(/([A-Za-z_-]+):\s*(\S*)/g)) out.set(m[1]!, m[2]!);
  return out;
}

type Where = readonly [string, number, string];

function field(p: Map<string, string>, key: string, where: Where): string {
  const v = p.get(key);
  if (v === undefined) throw malformed(where[0], where[1], `no ${key}: field`, where[2]);
  return v;
}

function fhandleOf(p: Map<string, string>, where: Where): FileHandle | undefined {
  if (!p.has('fhandle-bytes')) return undefined;
  const h = field(p, 'f_handle', where);
  if (!/^(?:[0-9a-f]{2})*$/.test(h)) throw malformed(where[0], where[1], 'f_handle is not hex bytes', where[2]);
  return {
    bytes: hex(field(p, 'fhandle-bytes', where), 'fhandle-bytes', where),
    type: hex(field(p, 'fhandle-type', where), 'fhandle-type', where),
    handle: Buffer.from(h, 'hex'),
  };
}

/** `(sec, nsec)` of timerfd it_value/it_interval. */
function timespec(s: string, what: string, where: Where): [bigint, bigint] {
  const m = /^\((\d+), (\d+)\)$/.exec(s.trim());
  if (!m) throw malformed(where[0], where[1], `${what} is not "(sec, nsec)"`, where[2]);
  return [BigInt(m[1]!), BigInt(m[2]!)];
}

function parseLock(value: string, where: Where): FileLock {
  // "1: FLOCK  ADVISORY  WRITE 3060 fe:00:2146410 0 EOF" (a blocked waiter has "-> " after the id)
  const t = value.trim().split(/\s+/).filter((s) => s !== '->');
  const dev = /^([0-9a-f]+):([0-9a-f]+):(\d+)$/.exec(t[5] ?? '');
  if (t.length < 8 || !/^\d+:$/.test(t[0]!) || !dev) throw malformed(where[0], where[1], 'unrecognized lock line', where[2]);
  return {
    id: udec(t[0]!.slice(0, -1), 'lock id', where),
    type: t[1]!,
    mode: t[2]!,
    access: t[3]!,
    pid: dec(t[4]!, 'lock pid', where),
    devMajor: hex(dev[1]!, 'lock dev major', where),
    devMinor: hex(dev[2]!, 'lock dev minor', where),
    ino: udec(dev[3]!, 'lock inode', where),
    start: decBig(t[6]!, 'lock start', where),
    end: t[7] === 'EOF' ? null : decBig(t[7]!, 'lock end', where),
  };
}

/** Parses the text of an fdinfo file; `path` names it in errors. */
export function parseFdinfo(text: string, path = 'fdinfo'): FdInfo {
  const out: FdInfo = { pos: 0n, flags: 0, mntId: 0, locks: [], epoll: [], inotify: [], other: [] };
  const timer: Partial<TimerfdInfo> = {};
  const seen = new Set<string>();
  lines(text).forEach((line, i) => {
    const where: Where = [path, i + 1, line];
    const colon = line.indexOf(':');
    if (colon <= 0) throw malformed(path, i + 1, 'expected "key: value"', line);
    const key = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    seen.add(key);
    switch (key) {
      case 'pos': out.pos = decBig(value, key, where); break;
      case 'flags': out.flags = oct(value, key, where); break;
      case 'mnt_id': out.mntId = udec(value, key, where); break;
      case 'ino': out.ino = udec(value, key, where); break;
      case 'lock': out.locks.push(parseLock(value, where)); break;
      case 'eventfd-count': (out.eventfd ??= { count: 0n }).count = hexBig(value, key, where); break;
      case 'eventfd-id': (out.eventfd ??= { count: 0n }).id = dec(value, key, where); break;
      case 'eventfd-semaphore': (out.eventfd ??= { count: 0n }).semaphore = dec(value, key, where) !== 0; break;
      case 'tfd': {
        const p = pairs(line);
        const sdev = hex(field(p, 'sdev', where), 'sdev', where);
        const { major, minor } = kernelDev(sdev);
        out.epoll.push({
          tfd: dec(field(p, 'tfd', where), 'tfd', where),
          events: hex(field(p, 'events', where), 'events', where),
          data: hexBig(field(p, 'data', where), 'data', where),
          pos: decBig(field(p, 'pos', where), 'pos', where),
          ino: hex(field(p, 'ino', where), 'ino', where),
          sdev, sdevMajor: major, sdevMinor: minor,
        });
        break;
      }
      case 'sigmask': out.signalfd = { sigmask: hexBig(value, key, where) }; break;
      case 'clockid': timer.clockid = dec(value, key, where); break;
      case 'ticks': timer.ticks = decBig(value, key, where); break;
      case 'settime flags': timer.settimeFlags = oct(value, key, where); break;
      case 'it_value': timer.itValue = timespec(value, key, where); break;
      case 'it_interval': timer.itInterval = timespec(value, key, where); break;
      case 'inotify wd': {
        const p = pairs(line.slice('inotify '.length));
        const sdev = hex(field(p, 'sdev', where), 'sdev', where);
        const { major, minor } = kernelDev(sdev);
        const fhandle = fhandleOf(p, where);
        out.inotify.push({
          wd: hex(field(p, 'wd', where), 'wd', where), // printed %x
          ino: hex(field(p, 'ino', where), 'ino', where),
          sdev, sdevMajor: major, sdevMinor: minor,
          mask: hex(field(p, 'mask', where), 'mask', where),
          ignoredMask: hex(field(p, 'ignored_mask', where), 'ignored_mask', where),
          ...(fhandle ? { fhandle } : {}),
        });
        break;
      }
      case 'fanotify flags':
      case 'fanotify ino':
      case 'fanotify mnt_id':
      case 'fanotify sdev': {
        const fan = (out.fanotify ??= { flags: 0, eventFlags: 0, marks: [] });
        const p = pairs(line.slice('fanotify '.length));
        if (key === 'fanotify flags') {
          fan.flags = hex(field(p, 'flags', where), 'flags', where);
          fan.eventFlags = hex(field(p, 'event-flags', where), 'event-flags', where);
          break;
        }
        const type = key === 'fanotify ino' ? 'inode' : key === 'fanotify mnt_id' ? 'mount' : 'sb';
        const fhandle = fhandleOf(p, where);
        fan.marks.push({
          type,
          ...(p.has('ino') ? { ino: hex(p.get('ino')!, 'ino', where) } : {}),
          ...(p.has('sdev') ? { sdev: hex(p.get('sdev')!, 'sdev', where) } : {}),
          ...(p.has('mnt_id') ? { mntId: hex(p.get('mnt_id')!, 'mnt_id', where) } : {}),
          mflags: hex(field(p, 'mflags', where), 'mflags', where),
          mask: hex(field(p, 'mask', where), 'mask', where),
          ignoredMask: hex(field(p, 'ignored_mask', where), 'ignored_mask', where),
          ...(fhandle ? { fhandle } : {}),
        });
        break;
      }
      case 'Pid': (out.pidfd ??= { pid: 0, nsPid: [] }).pid = dec(value, key, where); break;
      case 'NSpid':
        (out.pidfd ??= { pid: 0, nsPid: [] }).nsPid = value.split(/\s+/).filter((s) => s !== '').map((s) => dec(s, key, where));
        break;
      default: out.other.push(line);
    }
  });
  for (const key of ['pos', 'flags', 'mnt_id']) {
    if (!seen.has(key)) throw malformed(path, undefined, `no ${key}: line`);
  }
  if (timer.clockid !== undefined) {
    if (timer.ticks === undefined || timer.settimeFlags === undefined || !timer.itValue || !timer.itInterval) {
      throw malformed(path, undefined, 'incomplete timerfd lines (need clockid, ticks, settime flags, it_value, it_interval)');
    }
    out.timerfd = timer as TimerfdInfo;
  }
  return out;
}

/** `/proc/PID/fdinfo/FD`. */
export function readFdinfo(pid: ProcPid, fd: number): FdInfo {
  const path = procPath(pid, 'fdinfo', fd);
  return parseFdinfo(readProcText(path), path);
}

/** The target of `/proc/PID/fd/FD`: a path, `pipe:[ino]`, `socket:[ino]`, `anon_inode:[eventfd]`... */
export function readFdLink(pid: ProcPid, fd: number): string {
  return readProcLink(procPath(pid, 'fd', fd));
}

/** The open fds of a process, ascending. */
export function listFds(pid: ProcPid): number[] {
  const path = procPath(pid, 'fd');
  return readProcDir(path).map((n) => dec(n, 'fd', [path, undefined, n])).sort((a, b) => a - b);
}

/**
 * What an fd link names, for choosing the file kind: `anon_inode:[eventfd]` → `eventfd`,
 * `anon_inode:inotify` → `inotify`, `pipe:[12]` → `pipe`, `socket:[34]` → `socket`,
 * `/path` → `path`, anything else → the text before ':' (or the whole link).
 */
export function fdKind(link: string): string {
  if (link.startsWith('/')) return 'path';
  const anon = /^anon_inode:\[?([^\]]*)\]?$/.exec(link);
  if (anon) return anon[1]!;
  const m = /^([a-z_]+):\[\d+\]$/.exec(link);
  if (m) return m[1]!;
  const colon = link.indexOf(':');
  return colon > 0 ? link.slice(0, colon) : link;
}
