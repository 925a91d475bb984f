// What every socket kind shares (CRIU's sockets.c): the SOL_SOCKET options of sk_opts_entry, dumped
// with getsockopt and set again with setsockopt, both injected into the task; and small injected
// wrappers for the socket calls the kinds make (names, binding, sending).

import { SYS } from '../sys/arch.js';
import { SysError, isErrorResult } from '../sys/errno.js';
import type { TaskCalls } from '../sys/inject.js';
import {
  SO, SOCKADDR_MAX, SOL_SOCKET, linger, parseLinger, parseSockaddr, parseTimeval, timeval,
} from '../sys/socket.js';

// Scratch layout of the small calls here: option value at 0, its length at OPTLEN.
const OPTVAL_MAX = 256;
const OPTLEN = OPTVAL_MAX;

/** getsockopt inside the task; the value's bytes (throws SysError naming the option). */
export function getsockopt(inj: TaskCalls, fd: number, level: number, name: number, size = 4): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  inj.writeScratch(Buffer.alloc(size), 0);
  const lenAt = inj.writeScratch(len, OPTLEN);
  const r = inj.call(SYS.getsockopt, fd, level, name, inj.scratch(OPTVAL_MAX + 4), lenAt);
  if (isErrorResult(r)) throw new SysError(Number(-r), `getsockopt(${fd}, ${level}, ${name}) in task ${inj.pid}`);
  const got = inj.readScratch(4, OPTLEN).readUInt32LE(0);
  return inj.readScratch(Math.min(got, size), 0);
}

export function getsockoptInt(inj: TaskCalls, fd: number, level: number, name: number): number {
  return getsockopt(inj, fd, level, name, 4).readInt32LE(0);
}

/** setsockopt inside the task (throws SysError naming the option). */
export function setsockopt(inj: TaskCalls, fd: number, level: number, name: number, value: Buffer | number): void {
  const v = typeof value === 'number' ? int32(value) : value;
  const at = inj.writeScratch(v, 0);
  const r = inj.call(SYS.setsockopt, fd, level, name, at, v.length);
  if (isErrorResult(r)) throw new SysError(Number(-r), `setsockopt(${fd}, ${level}, ${name}) in task ${inj.pid}`);
}

function int32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
}

/** getsockname/getpeername inside the task; undefined on ENOTCONN. */
export function sockName(inj: TaskCalls, fd: number, peer = false): ReturnType<typeof parseSockaddr> | undefined {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(SOCKADDR_MAX);
  const lenAt = inj.writeScratch(len, SOCKADDR_MAX);
  const r = inj.call(peer ? SYS.getpeername : SYS.getsockname, fd, inj.scratch(SOCKADDR_MAX + 4), lenAt);
  if (peer && r === -107n /* ENOTCONN */) return undefined;
  if (isErrorResult(r)) throw new SysError(Number(-r), `${peer ? 'getpeername' : 'getsockname'}(${fd}) in task ${inj.pid}`);
  const got = inj.readScratch(4, SOCKADDR_MAX).readUInt32LE(0);
  return parseSockaddr(inj.readScratch(SOCKADDR_MAX, 0), Math.min(got, SOCKADDR_MAX));
}

/** bind or connect inside the task; the raw result (negative errno), for the caller to explain. */
export function sockAddrCall(inj: TaskCalls, nr: typeof SYS.bind | typeof SYS.connect, fd: number, addr: { addr: Buffer; len: number }): bigint {
  return inj.call(nr, fd, inj.writeScratch(addr.addr, 0), addr.len);
}

/** Create a socket inside the task; returns its fd. */
export function socketIn(inj: TaskCalls, family: number, type: number, protocol = 0): number {
  return Number(inj.callChecked(SYS.socket, family, type, protocol));
}

/** A socketpair inside the task. */
export function socketpairIn(inj: TaskCalls, family: number, type: number): [number, number] {
  const at = inj.scratch(8);
  inj.callChecked(SYS.socketpair, family, type, 0, at);
  const fds = inj.readScratch(8);
  return [fds.readInt32LE(0), fds.readInt32LE(4)];
}

/**
 * SOL_SOCKET options as CRIU's dump_socket_opts records them (the same fields, set the same way,
 * so `stasis show` and crit print what criu would).
 */
export function dumpSkOpts(inj: TaskCalls, fd: number, what: string): Record<string, unknown> {
  const int = (name: number) => getsockoptInt(inj, fd, SOL_SOCKET, name);
  const bool = (name: number) => int(name) !== 0;
  // Options a family does not have (SO_PASSCRED on inet sockets in newer kernels) are left out.
  const maybe = (name: number): boolean | undefined => {
    try {
      return bool(name);
    } catch (e) {
      if (e instanceof SysError && (e.code === 'EOPNOTSUPP' || e.code === 'ENOPROTOOPT')) return undefined;
      throw e;
    }
  };
  const snd = parseTimeval(getsockopt(inj, fd, SOL_SOCKET, SO.SNDTIMEO_OLD, 16));
  const rcv = parseTimeval(getsockopt(inj, fd, SOL_SOCKET, SO.RCVTIMEO_OLD, 16));
  const opts: Record<string, unknown> = {
    so_sndbuf: int(SO.SNDBUF), so_rcvbuf: int(SO.RCVBUF),
    so_snd_tmo_sec: snd.sec, so_snd_tmo_usec: snd.usec, so_rcv_tmo_sec: rcv.sec, so_rcv_tmo_usec: rcv.usec,
    reuseaddr: bool(SO.REUSEADDR), so_priority: int(SO.PRIORITY), so_rcvlowat: int(SO.RCVLOWAT),
  };
  const mark = int(SO.MARK);
  if (mark) opts.so_mark = mark;
  const passcred = maybe(SO.PASSCRED);
  if (passcred !== undefined) opts.so_passcred = passcred;
  const passsec = maybe(SO.PASSSEC);
  if (passsec !== undefined) opts.so_passsec = passsec;
  opts.so_dontroute = bool(SO.DONTROUTE);
  opts.so_no_check = bool(SO.NO_CHECK);
  const dev = getsockopt(inj, fd, SOL_SOCKET, SO.BINDTODEVICE, 16);
  const ifname = dev.subarray(0, dev.indexOf(0) < 0 ? dev.length : dev.indexOf(0)).toString('latin1');
  if (ifname) opts.so_bound_dev = ifname;
  // SO_GET_FILTER with a zero-length buffer reports the number of instructions in optlen.
  if (filterLength(inj, fd) > 0) {
    throw new Error(`${what} has a socket filter (SO_ATTACH_FILTER), which stasis cannot dump yet`);
  }
  opts.so_reuseport = bool(SO.REUSEPORT);
  opts.so_broadcast = bool(SO.BROADCAST);
  opts.so_keepalive = bool(SO.KEEPALIVE);
  opts.so_oobinline = int(SO.OOBINLINE) ? 1 : 0;
  const l = parseLinger(getsockopt(inj, fd, SOL_SOCKET, SO.LINGER, 8));
  if (l.onoff) opts.so_linger = l.seconds;
  opts.so_buf_lock = int(SO.BUF_LOCK);
  return opts;
}

function filterLength(inj: TaskCalls, fd: number): number {
  const lenAt = inj.writeScratch(Buffer.alloc(4), OPTLEN);
  const r = inj.call(SYS.getsockopt, fd, SOL_SOCKET, SO.GET_FILTER, inj.scratch(OPTVAL_MAX + 4), lenAt);
  return isErrorResult(r) ? 0 : inj.readScratch(4, OPTLEN).readUInt32LE(0);
}

/**
 * Set the options of a dumped sk_opts_entry on a socket of the task. Options that still have the
 * kernel's default are left alone; the buffer sizes are always set, and then their locks put back.
 */
export function restoreSkOpts(inj: TaskCalls, fd: number, opts: Record<string, any>): void {
  const set = (name: number, v: Buffer | number) => setsockopt(inj, fd, SOL_SOCKET, name, v);
  // getsockopt shows the doubled value the kernel keeps; setsockopt doubles what it is given.
  // The FORCE variants pass net.core.[rw]mem_max (stasis runs as root).
  setBuf(inj, fd, SO.SNDBUFFORCE, SO.SNDBUF, Number(opts.so_sndbuf) / 2);
  setBuf(inj, fd, SO.RCVBUFFORCE, SO.RCVBUF, Number(opts.so_rcvbuf) / 2);
  if (opts.so_buf_lock !== undefined) set(SO.BUF_LOCK, Number(opts.so_buf_lock));
  if (BigInt(opts.so_snd_tmo_sec ?? 0) || BigInt(opts.so_snd_tmo_usec ?? 0)) {
    set(SO.SNDTIMEO_OLD, timeval(BigInt(opts.so_snd_tmo_sec), BigInt(opts.so_snd_tmo_usec)));
  }
  if (BigInt(opts.so_rcv_tmo_sec ?? 0) || BigInt(opts.so_rcv_tmo_usec ?? 0)) {
    set(SO.RCVTIMEO_OLD, timeval(BigInt(opts.so_rcv_tmo_sec), BigInt(opts.so_rcv_tmo_usec)));
  }
  const flags: [string, number][] = [
    ['reuseaddr', SO.REUSEADDR], ['so_reuseport', SO.REUSEPORT], ['so_passcred', SO.PASSCRED],
    ['so_passsec', SO.PASSSEC], ['so_dontroute', SO.DONTROUTE], ['so_no_check', SO.NO_CHECK],
    ['so_broadcast', SO.BROADCAST], ['so_keepalive', SO.KEEPALIVE], ['so_oobinline', SO.OOBINLINE],
  ];
  for (const [field, name] of flags) if (opts[field]) set(name, 1);
  if (opts.so_priority) set(SO.PRIORITY, Number(opts.so_priority));
  if (opts.so_rcvlowat !== undefined && Number(opts.so_rcvlowat) > 1) set(SO.RCVLOWAT, Number(opts.so_rcvlowat));
  if (opts.so_mark) set(SO.MARK, Number(opts.so_mark));
  if (opts.so_linger !== undefined) set(SO.LINGER, linger(true, Number(opts.so_linger)));
  if (opts.so_bound_dev) set(SO.BINDTODEVICE, Buffer.from(`${opts.so_bound_dev}\0`));
}

function setBuf(inj: TaskCalls, fd: number, force: number, plain: number, value: number): void {
  if (!value) return;
  try {
    setsockopt(inj, fd, SOL_SOCKET, force, value);
  } catch (e) {
    if (!(e instanceof SysError) || e.code !== 'EPERM') throw e;
    setsockopt(inj, fd, SOL_SOCKET, plain, value);
  }
}

/** A socket's inode from its /proc link `socket:[INODE]`. */
export function socketInode(link: string): number {
  const m = /^socket:\[(\d+)\]$/.exec(link);
  if (!m) throw new Error(`${link} is not a socket`);
  return Number(m[1]);
}
