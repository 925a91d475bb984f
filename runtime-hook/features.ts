// `stasis check --feature NAME`: criu 4.2's feature names, each answered for stasis on this
// machine. A feature is supported when stasis does what it stands for and the kernel has what
// that takes (tried for real, as `stasis check` does); a feature stasis does not implement is
// not supported whatever the kernel offers, so a test runner that asks before using it skips
// what stasis would fail. Supported: "NAME is supported" on stdout, exit 0; otherwise one line
// saying why on stderr, exit 1.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { addressOf, kill, nativeBuffer, rawSyscall, spawnPausedSeed } from '../sys/native.js';
import { PRIVATE_DATA_QUERY, scanPages } from '../sys/pagemap.js';
import { PTRACE_O, SIGKILL, getRseqConfiguration, seizeAndStop, setOptions, waitTask } from '../sys/ptrace.js';
import { UsageError } from './options.js';
import { nftTool, probeNftables } from '../net-ns/network-lock.js';

interface Feature {
  /** Why stasis does not support it, whatever the kernel offers. */
  notInStasis?: string;
  /** What it needs installed besides the kernel: says what is missing (undefined: all there). */
  missingTool?: () => string | undefined;
  /** Tries what the kernel must offer; throws saying what is missing. `seed`: a seized, stopped task. */
  probe?: (seed: () => number) => void;
}

function ok(r: bigint, what: string): bigint {
  if (r < 0n) throw new Error(`${what}: errno ${-r}`);
  return r;
}

function closeFd(fd: bigint): void {
  rawSyscall(SYS.close, fd);
}

function procHas(file: string, re: RegExp, what: string): void {
  if (!re.test(fs.readFileSync(file, 'utf8'))) throw new Error(`${file} has no ${what}`);
}

function exists(file: string): void {
  if (!fs.existsSync(file)) throw new Error(`no ${file}`);
}

/** A socket option that can be read (or set, with `set`) on a fresh socket of `family`/`type`. */
function sockopt(family: number, type: number, level: number, name: number, what: string, set?: number): void {
  const fd = ok(rawSyscall(SYS.socket, family, type | 0o2000000 /* SOCK_CLOEXEC */, 0), `socket for ${what}`);
  try {
    const val = nativeBuffer(4);
    const len = nativeBuffer(4);
    len.writeUInt32LE(4);
    if (set === undefined) ok(rawSyscall(SYS.getsockopt, fd, level, name, addressOf(val), addressOf(len)), `getsockopt(${what})`);
    else {
      val.writeInt32LE(set);
      ok(rawSyscall(SYS.setsockopt, fd, level, name, addressOf(val), 4), `setsockopt(${what})`);
    }
  } finally {
    closeFd(fd);
  }
}

/** The nftables network lock: the nft tool, and a kernel making its table (net-ns/network-lock.ts). */
const NFTABLES: Feature = {
  missingTool: () => (nftTool() ? undefined : 'the nft tool (Debian\'s package nftables) is not installed'),
  probe: () => probeNftables(),
};

/** criu 4.2's feature names (its `check --help` lists them), in its order. */
export const FEATURES: Record<string, Feature> = {
  mnt_id: { probe: () => procHas('/proc/self/fdinfo/0', /^mnt_id:/m, 'mnt_id') },
  mem_dirty_track: { notInStasis: 'stasis makes no incremental dumps (no memory change tracking)' },
  aio_remap: { notInStasis: 'AIO rings are not dumped' },
  timerfd: { probe: () => {
    const fd = ok(rawSyscall(SYS.timerfd_create, 1 /* CLOCK_MONOTONIC */, 0o2000000), 'timerfd_create');
    try {
      procHas(`/proc/self/fdinfo/${fd}`, /^it_value:/m, 'timerfd it_value');
    } finally {
      closeFd(fd);
    }
  } },
  tun: { notInStasis: 'tun devices are not dumped' },
  tun_ns: { notInStasis: 'tun devices are not dumped' },
  userns: { notInStasis: 'namespaces owned by a user namespace (a container\'s) are not restored yet' },
  fdinfo_lock: { probe: () => {
    const file = fs.openSync('/proc/self/exe', 'r');
    try {
      ok(rawSyscall(SYS.flock, file, 1 /* LOCK_SH */), 'flock');
      procHas(`/proc/self/fdinfo/${file}`, /^lock:/m, 'lock: line');
    } finally {
      fs.closeSync(file);
    }
  } },
  seccomp_suspend: { probe: (seed) => {
    setOptions(seed(), PTRACE_O.TRACESYSGOOD | PTRACE_O.SUSPEND_SECCOMP);
    setOptions(seed(), PTRACE_O.TRACESYSGOOD);
  } },
  // PTRACE_SECCOMP_GET_FILTER: EINVAL for a task with no filter, EIO where the request is unknown.
  seccomp_filters: { probe: (seed) => {
    if (rawSyscall(SYS.ptrace, 0x420c, seed(), 0, 0) === -5n) throw new Error('no PTRACE_SECCOMP_GET_FILTER');
  } },
  loginuid: { notInStasis: 'the audit loginuid is not set back on restore' },
  cgroupns: { probe: () => exists('/proc/self/ns/cgroup') },
  autofs: { notInStasis: 'autofs mounts are not dumped' },
  // Half-closed connections: repair mode's shutdown puts our FIN back, a raw socket (with
  // SO_MARK, which the network lock lets through) the peer's.
  tcp_half_closed: { probe: () => {
    sockopt(2 /* AF_INET */, 1 /* SOCK_STREAM */, 6 /* SOL_TCP */, 19 /* TCP_REPAIR */, 'TCP_REPAIR', 1);
    const raw = ok(rawSyscall(SYS.socket, 2 /* AF_INET */, 3 /* SOCK_RAW */ | 0o2000000, 255 /* IPPROTO_RAW */), 'a raw socket (IPPROTO_RAW)');
    try {
      const mark = nativeBuffer(4);
      mark.writeUInt32LE(0xc114);
      ok(rawSyscall(SYS.setsockopt, raw, 1 /* SOL_SOCKET */, 36 /* SO_MARK */, addressOf(mark), 4), 'setsockopt(SO_MARK) on a raw socket');
    } finally {
      closeFd(raw);
    }
  } },
  compat_cr: { notInStasis: '32-bit (compat mode) tasks are not dumped' },
  uffd: { notInStasis: 'stasis has no lazy-pages server' },
  'uffd-noncoop': { notInStasis: 'stasis has no lazy-pages server' },
  can_map_vdso: { notInStasis: 'stasis moves the vDSO it has to where the task had it, instead of mapping one (ARCH_MAP_VDSO)' },
  sk_ns: { notInStasis: 'sockets are not matched to network namespaces (SIOCGSKNS)' },
  sk_unix_file: { notInStasis: 'a unix socket\'s bound file is not found through SIOCUNIXFILE' },
  net_diag_raw: { notInStasis: 'raw sockets are not dumped' },
  nsid: { notInStasis: 'network namespace ids (nsid) are not dumped' },
  link_nsid: { notInStasis: 'network namespace ids (nsid) of links are not dumped' },
  kcmp_epoll: { probe: () => {
    const ep = ok(rawSyscall(SYS.epoll_create1, 0o2000000), 'epoll_create1');
    const ev = ok(rawSyscall(SYS.eventfd2, 0, 0o2000000), 'eventfd2');
    try {
      const event = nativeBuffer(12);
      event.writeUInt32LE(1 /* EPOLLIN */);
      ok(rawSyscall(SYS.epoll_ctl, ep, 1 /* EPOLL_CTL_ADD */, ev, addressOf(event)), 'epoll_ctl');
      const slot = nativeBuffer(12);
      slot.writeUInt32LE(Number(ep), 0); // kcmp_epoll_slot: efd, tfd, toff
      slot.writeUInt32LE(Number(ev), 4);
      slot.writeUInt32LE(0, 8);
      const r = rawSyscall(SYS.kcmp, process.pid, process.pid, 7 /* KCMP_EPOLL_TFD */, ev, addressOf(slot));
      if (r !== 0n) throw new Error(`kcmp(KCMP_EPOLL_TFD): ${r < 0n ? `errno ${-r}` : 'no match'}`);
    } finally {
      closeFd(ev);
      closeFd(ep);
    }
  } },
  timens: { probe: () => exists('/proc/self/timens_offsets') },
  external_net_ns: { probe: () => exists('/proc/self/ns/net') },
  clone3_set_tid: { probe: () => {
    if (rawSyscall(SYS.clone3, 0, 0) === -38n) throw new Error('no clone3');
    exists('/proc/sys/kernel/ns_last_pid');
  } },
  newifindex: { notInStasis: 'network devices are not made at a given index (IFLA_NEW_IFINDEX)' },
  nftables: NFTABLES,
  has_ipt_legacy: { notInStasis: 'stasis locks through the iptables of the system (iptables-nft here), not iptables-legacy' },
  pidfd_store: { probe: () => {
    const fd = ok(rawSyscall(SYS.pidfd_open, process.pid, 0), 'pidfd_open');
    try {
      closeFd(ok(rawSyscall(SYS.pidfd_getfd, fd, 0, 0), 'pidfd_getfd'));
    } finally {
      closeFd(fd);
    }
  } },
  ns_pid: { probe: () => procHas('/proc/self/status', /^NSpid:/m, 'NSpid') },
  apparmor_stacking: { notInStasis: 'stasis cannot set LSM profiles' },
  network_lock_nftables: NFTABLES,
  sockopt_buf_lock: { probe: () => sockopt(1 /* AF_UNIX */, 1 /* SOCK_STREAM */, 1 /* SOL_SOCKET */, 72 /* SO_BUF_LOCK */, 'SO_BUF_LOCK') },
  memfd_hugetlb: { notInStasis: 'hugetlb memfds are not restored as such' },
  move_mount_set_group: { notInStasis: 'mounts are restored without MOVE_MOUNT_SET_GROUP' },
  openat2: { notInStasis: 'files are opened without openat2' },
  get_rseq_conf: { probe: (seed) => { getRseqConfiguration(seed()); } },
  ipv6_freebind: { probe: () => sockopt(10 /* AF_INET6 */, 2 /* SOCK_DGRAM */, 41 /* SOL_IPV6 */, 78 /* IPV6_FREEBIND */, 'IPV6_FREEBIND', 1) },
  pagemap_scan: { probe: () => { scanPages(process.pid, 0x10000n, 0x20000n, PRIVATE_DATA_QUERY); } },
  timer_cr_ids: { probe: () => {
    ok(rawSyscall(SYS.prctl, 77 /* PR_TIMER_CREATE_RESTORE_IDS */, 2 /* _GET */, 0, 0, 0), 'prctl(PR_TIMER_CREATE_RESTORE_IDS)');
  } },
  overlayfs_maps: { notInStasis: 'files mapped from overlayfs are not told apart (not checked by stasis)' },
  breakpoints: { notInStasis: 'hardware breakpoints (debug registers) are not dumped' },
  pagemap_scan_guard_pages: { notInStasis: 'guard pages (MADV_GUARD_INSTALL) are not dumped' },
};

/** Throws a one-line error for a name criu does not know. */
export function checkFeatureName(name: string): void {
  if (!Object.hasOwn(FEATURES, name)) throw new UsageError(`unknown feature '${name}' (criu 4.2's names: ${Object.keys(FEATURES).join(', ')})`);
}

/** Why `name` is not supported here, or undefined when it is. */
export function featureMissing(name: string): string | undefined {
  checkFeatureName(name);
  const f = FEATURES[name]!;
  if (f.notInStasis) return f.notInStasis;
  const tool = f.missingTool?.();
  if (tool) return tool;
  let seed: number | undefined;
  const seeded = () => {
    if (seed === undefined) {
      seed = spawnPausedSeed();
      seizeAndStop(seed);
    }
    return seed;
  };
  try {
    f.probe!(seeded);
    return undefined;
  } catch (e) {
    return `the kernel lacks it: ${(e as Error).message}`;
  } finally {
    if (seed !== undefined) {
      kill(seed, SIGKILL);
      try { waitTask(seed, { timeoutMs: 2000 }); } catch { /* gone */ }
    }
  }
}

/** `check --feature NAME`: exit 0 and say so when supported; else one line why, exit 1. */
export function checkFeature(name: string, out: NodeJS.WritableStream, err: NodeJS.WritableStream): number {
  const missing = featureMissing(name);
  if (missing === undefined) {
    out.write(`${name} is supported\n`);
    return 0;
  }
  err.write(`stasis: ${name} is not supported: ${missing}\n`);
  return 1;
}
