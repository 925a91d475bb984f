// Socket constants and the byte layouts of socket structures (sockaddr_un/in/in6, msghdr, iovec,
// cmsghdr, timeval, linger), for system calls that stasis makes itself or injects into a task.
// The kinds in files/ build and read these through the functions here, never by offsets.

import { SYS } from './arch.js';
import { addressOf, nativeBuffer, nativeCString, rawSyscall } from './native.js';

export const AF = { UNSPEC: 0, UNIX: 1, INET: 2, INET6: 10, NETLINK: 16, PACKET: 17 } as const;
export const SOCK = { STREAM: 1, DGRAM: 2, RAW: 3, SEQPACKET: 5, NONBLOCK: 0o4000, CLOEXEC: 0o2000000 } as const;
export const IPPROTO = { IP: 0, TCP: 6, UDP: 17, IPV6: 41 } as const;
export const SOL_SOCKET = 1;
/** SOL_SOCKET option names (asm-generic/socket.h; x86_64 uses these). */
export const SO = {
  REUSEADDR: 2, TYPE: 3, DONTROUTE: 5, BROADCAST: 6, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9,
  OOBINLINE: 10, NO_CHECK: 11, PRIORITY: 12, LINGER: 13, REUSEPORT: 15, PASSCRED: 16, RCVLOWAT: 18,
  RCVTIMEO_OLD: 20, SNDTIMEO_OLD: 21, BINDTODEVICE: 25, GET_FILTER: 26, ACCEPTCONN: 30,
  SNDBUFFORCE: 32, RCVBUFFORCE: 33, PASSSEC: 34, MARK: 36, PROTOCOL: 38, DOMAIN: 39, PEEK_OFF: 42,
  BUF_LOCK: 72,
} as const;
export const TCP_OPT = { NODELAY: 1, CORK: 3, KEEPIDLE: 4, KEEPINTVL: 5, KEEPCNT: 6, INFO: 11 } as const;
export const IP_FREEBIND = 15;
export const IPV6_V6ONLY = 26;
export const IPV6_FREEBIND = 78;
export const MSG = { PEEK: 0x2, CTRUNC: 0x8, TRUNC: 0x20, DONTWAIT: 0x40, NOSIGNAL: 0x4000 } as const;
export const SCM = { RIGHTS: 1, CREDENTIALS: 2 } as const;
/** Kernel socket states (include/net/tcp_states.h), as sock_diag and CRIU's images use them. */
export const TCP_STATE = { ESTABLISHED: 1, SYN_SENT: 2, CLOSE: 7, LISTEN: 10 } as const;
export const SHUT = { RD: 0, WR: 1, RDWR: 2 } as const;

const SUN_PATH_MAX = 108;

/**
 * sockaddr_un for `name` as the kernel reports it (sun_path bytes; an abstract name starts with
 * NUL). Returns the struct and the length to pass to bind/connect/sendto.
 */
export function sockaddrUn(name: Uint8Array): { addr: Buffer; len: number } {
  const abstract = name.length > 0 && name[0] === 0;
  // A path is NUL-terminated (sock_diag reports it with its NUL, as the kernel keeps it).
  const pathLen = abstract || name[name.length - 1] === 0 ? name.length : name.length + 1;
  if (pathLen > SUN_PATH_MAX) throw new Error(`unix socket name of ${name.length} bytes does not fit sun_path`);
  const addr = Buffer.alloc(2 + SUN_PATH_MAX);
  addr.writeUInt16LE(AF.UNIX, 0);
  Buffer.from(name).copy(addr, 2);
  return { addr, len: 2 + pathLen };
}

/** sockaddr_in / sockaddr_in6 for a raw address (4 or 16 bytes, network order) and port. */
export function sockaddrInet(family: number, address: Uint8Array, port: number): { addr: Buffer; len: number } {
  if (family === AF.INET) {
    const addr = Buffer.alloc(16);
    addr.writeUInt16LE(AF.INET, 0);
    addr.writeUInt16BE(port, 2);
    Buffer.from(address).copy(addr, 4, 0, 4);
    return { addr, len: 16 };
  }
  const addr = Buffer.alloc(28);
  addr.writeUInt16LE(AF.INET6, 0);
  addr.writeUInt16BE(port, 2);
  Buffer.from(address).copy(addr, 8, 0, 16); // flowinfo at 4, scope_id at 24 stay 0
  return { addr, len: 28 };
}

/** A sockaddr the kernel filled in (getsockname/getpeername/recvmsg), `len` bytes of it. */
export function parseSockaddr(buf: Buffer, len: number): { family: number; address: Buffer; port: number; name?: Buffer } {
  const family = len >= 2 ? buf.readUInt16LE(0) : AF.UNSPEC;
  if (family === AF.INET) return { family, port: buf.readUInt16BE(2), address: Buffer.from(buf.subarray(4, 8)) };
  if (family === AF.INET6) return { family, port: buf.readUInt16BE(2), address: Buffer.from(buf.subarray(8, 24)) };
  if (family === AF.UNIX) {
    let name = Buffer.from(buf.subarray(2, len));
    if (name.length && name[0] !== 0 && name[name.length - 1] === 0) name = name.subarray(0, name.indexOf(0));
    return { family, port: 0, address: Buffer.alloc(0), name };
  }
  return { family, port: 0, address: Buffer.alloc(0) };
}

/** The largest sockaddr (sockaddr_storage). */
export const SOCKADDR_MAX = 128;

/** struct timeval as SO_SNDTIMEO_OLD/SO_RCVTIMEO_OLD use it. */
export function timeval(sec: bigint, usec: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigInt64LE(sec, 0);
  b.writeBigInt64LE(usec, 8);
  return b;
}

export function parseTimeval(b: Buffer): { sec: bigint; usec: bigint } {
  return { sec: b.readBigInt64LE(0), usec: b.readBigInt64LE(8) };
}

/** struct linger. */
export function linger(onoff: boolean, seconds: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32LE(onoff ? 1 : 0, 0);
  b.writeInt32LE(seconds, 4);
  return b;
}

export function parseLinger(b: Buffer): { onoff: boolean; seconds: number } {
  return { onoff: b.readInt32LE(0) !== 0, seconds: b.readInt32LE(4) };
}

/**
 * A struct msghdr with one iovec, laid out in a block of memory that starts at `base` (an address
 * in whichever process will make the call): [msghdr][iovec][name][control][data].
 */
export interface MsghdrBlock {
  /** The whole block's initial bytes (header, iovec, name); data and control follow. */
  bytes: Buffer;
  nameOffset: number;
  controlOffset: number;
  dataOffset: number;
  size: number;
}

const MSGHDR_SIZE = 56;
const IOVEC_SIZE = 16;

export function msghdrBlock(base: bigint, o: { dataLen: number; controlLen?: number; name?: Buffer; nameLen?: number }): MsghdrBlock {
  const nameLen = o.name ? (o.nameLen ?? o.name.length) : 0;
  const controlLen = o.controlLen ?? 0;
  const nameOffset = MSGHDR_SIZE + IOVEC_SIZE;
  const controlOffset = nameOffset + Math.ceil(nameLen / 8) * 8;
  const dataOffset = controlOffset + Math.ceil(controlLen / 8) * 8;
  const bytes = Buffer.alloc(controlOffset);
  const at = (off: number) => base + BigInt(off);
  if (o.name) {
    bytes.writeBigUInt64LE(at(nameOffset), 0);
    bytes.writeUInt32LE(nameLen, 8);
    o.name.copy(bytes, nameOffset, 0, nameLen);
  }
  bytes.writeBigUInt64LE(at(MSGHDR_SIZE), 16); // msg_iov
  bytes.writeBigUInt64LE(1n, 24); // msg_iovlen
  if (controlLen) {
    bytes.writeBigUInt64LE(at(controlOffset), 32);
    bytes.writeBigUInt64LE(BigInt(controlLen), 40);
  }
  bytes.writeBigUInt64LE(at(dataOffset), MSGHDR_SIZE); // iov_base
  bytes.writeBigUInt64LE(BigInt(o.dataLen), MSGHDR_SIZE + 8); // iov_len
  return { bytes, nameOffset, controlOffset, dataOffset, size: dataOffset + o.dataLen };
}

/** msg_controllen and msg_flags of a msghdr after recvmsg. */
export function msghdrResult(header: Buffer): { controlLen: number; flags: number } {
  return { controlLen: Number(header.readBigUInt64LE(40)), flags: header.readInt32LE(48) };
}

/** The control messages in a recvmsg control buffer: level, type and data of each. */
export function parseCmsgs(control: Buffer): { level: number; type: number; data: Buffer }[] {
  const out: { level: number; type: number; data: Buffer }[] = [];
  for (let at = 0; at + 16 <= control.length;) {
    const len = Number(control.readBigUInt64LE(at));
    if (len < 16 || at + len > control.length) break;
    out.push({ level: control.readInt32LE(at + 8), type: control.readInt32LE(at + 12), data: control.subarray(at + 16, at + len) });
    at += Math.ceil(len / 8) * 8;
  }
  return out;
}

export const SOL_PACKET = 263;
/** SOL_PACKET option names (linux/if_packet.h). */
export const PACKET_OPT = {
  ADD_MEMBERSHIP: 1, RX_RING: 5, COPY_THRESH: 7, AUXDATA: 8, ORIGDEV: 9, VERSION: 10, RESERVE: 12,
  TX_RING: 13, LOSS: 14, VNET_HDR: 15, TIMESTAMP: 17, FANOUT: 18,
} as const;

/** struct sockaddr_ll: a packet socket bound to interface `ifindex` for `protocol` (host order). */
export function sockaddrLl(protocol: number, ifindex: number): { addr: Buffer; len: number } {
  const b = Buffer.alloc(20);
  b.writeUInt16LE(AF.PACKET, 0);
  b.writeUInt16BE(protocol, 2);
  b.writeInt32LE(ifindex, 4);
  return { addr: b, len: b.length };
}

/** struct packet_mreq with room for the longest hardware address (packet_mreq_max, 32 bytes). */
export function packetMreq(ifindex: number, type: number, address: Uint8Array): Buffer {
  const b = Buffer.alloc(8 + 32);
  b.writeInt32LE(ifindex, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(address.length, 6);
  Buffer.from(address).copy(b, 8);
  return b;
}

/** struct tpacket_req3 (a ring's geometry; the first four fields are tpacket_req). */
export function tpacketReq3(r: { block_size: number; block_nr: number; frame_size: number; frame_nr: number;
  retire_tmo: number; sizeof_priv: number; features: number }): Buffer {
  const b = Buffer.alloc(28);
  [r.block_size, r.block_nr, r.frame_size, r.frame_nr, r.retire_tmo, r.sizeof_priv, r.features]
    .forEach((v, i) => b.writeUInt32LE(Number(v) >>> 0, 4 * i));
  return b;
}

/**
 * The protocol name of the socket behind /proc/PID/fd/N ("UNIX", "UNIX-STREAM", "TCP", "UDPv6",
 * ...: the kernel's system.sockprotoname xattr), or undefined if it is no socket.
 */
export function sockProtoName(pid: number, fd: number): string | undefined {
  const path = nativeCString(`/proc/${pid}/fd/${fd}`);
  const name = nativeCString('system.sockprotoname');
  const value = nativeBuffer(64);
  const r = rawSyscall(SYS.getxattr, addressOf(path), addressOf(name), addressOf(value), value.length);
  if (r < 0n) return undefined;
  const text = value.subarray(0, Number(r)).toString('latin1');
  return text.replace(/\0.*$/s, '');
}


