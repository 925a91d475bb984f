// Netlink requests stasis makes itself.
// - NETLINK_SOCK_DIAG: what the kernel knows about a socket that its owner cannot tell through
//   getsockopt — a unix socket's peer (by inode), bound name, pending connections and queue
//   lengths; an inet listener's backlog; a packet socket's memberships and rings. Asked in the
//   network namespace stasis runs in, or a task's.
// - NETLINK_ROUTE: the links of a network namespace, asked through a socket opened inside it.

import { SYS } from './arch.js';
import { SysError } from './errno.js';
import { addressOf, cString, nativeBuffer, rawSyscall, syscall } from './native.js';
import { AF, SOCK } from './socket.js';
import { inNamespaceOf } from './setns.js';

const NETLINK_ROUTE = 0;
const NETLINK_SOCK_DIAG = 4;
const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const TCP_LISTEN = 10;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLMSG_HDRLEN = 16;
const NLA_HDRLEN = 4;

const UDIAG_SHOW = { NAME: 0x1, VFS: 0x2, PEER: 0x4, ICONS: 0x8, RQLEN: 0x10 } as const;
const UNIX_DIAG = { NAME: 0, VFS: 1, PEER: 2, ICONS: 3, RQLEN: 4, SHUTDOWN: 6 } as const;
const INET_DIAG_SHUTDOWN = 8;

/** What sock_diag reports about a unix socket (unix_diag_msg and its attributes). */
export interface UnixDiag {
  ino: number;
  type: number;
  state: number;
  /** sun_path as bound (abstract names start with NUL); absent when unbound. */
  name?: Buffer;
  /** The bound file's inode and device (path names only). */
  vfs?: { ino: number; dev: number };
  /** The peer's inode, 0 when none. */
  peer: number;
  /** Inodes of connections waiting in a listener's accept queue. */
  icons: number[];
  /** Listener: accept-queue length and backlog; others: bytes queued to read / not yet read by the peer. */
  rqueue: number;
  wqueue: number;
  /** sk_shutdown bits: 1 receive, 2 send. */
  shutdown: number;
}

const PACKET_SHOW = { INFO: 0x1, MCLIST: 0x2, RING_CFG: 0x4 } as const;
const PACKET_DIAG = { INFO: 0, MCLIST: 1, RX_RING: 2, TX_RING: 3 } as const;
/** packet_diag_info.pdi_flags */
export const PDI = { RUNNING: 0x1, AUXDATA: 0x2, ORIGDEV: 0x4, VNETHDR: 0x8, LOSS: 0x10 } as const;

/** A ring's geometry (packet_diag_ring, laid out as tpacket_req3). */
export interface PacketRing {
  block_size: number; block_nr: number; frame_size: number; frame_nr: number;
  retire_tmo: number; sizeof_priv: number; features: number;
}

/** What sock_diag reports about a packet socket (packet_diag_msg and its attributes). */
export interface PacketDiag {
  ino: number;
  type: number;
  /** The protocol it receives (host order; 0: none). */
  protocol: number;
  /** packet_diag_info: bound interface (0: any), TPACKET version, reserve, copy_thresh, timestamp, PDI flags. */
  index: number; version: number; reserve: number; copyThresh: number; tstamp: number; flags: number;
  /** Memberships (PACKET_ADD_MEMBERSHIP): interface, times added, type, address. */
  mclist: { index: number; count: number; type: number; addr: Buffer }[];
  rxRing?: PacketRing;
  txRing?: PacketRing;
}

/** What sock_diag reports about an inet socket (inet_diag_msg). */
export interface InetDiag {
  family: number;
  state: number;
  sport: number;
  dport: number;
  src: Buffer;
  dst: Buffer;
  /** Listener: accept-queue length and backlog; others: queued bytes. */
  rqueue: number;
  wqueue: number;
  ino: number;
  shutdown: number;
}

function attrs(buf: Buffer, from: number, to: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let at = from; at + NLA_HDRLEN <= to;) {
    const len = buf.readUInt16LE(at);
    if (len < NLA_HDRLEN) break;
    out.set(buf.readUInt16LE(at + 2) & 0x3fff, buf.subarray(at + NLA_HDRLEN, at + len));
    at += Math.ceil(len / 4) * 4;
  }
  return out;
}

/**
 * Send one SOCK_DIAG_BY_FAMILY request and collect the answers' payloads (after nlmsghdr) until
 * the kernel is done: NLMSG_DONE for a dump, the single reply for an exact request.
 */
function request(body: Buffer, dump: boolean, what: string,
  kind: { type: number; reply: number; open?: () => number } = { type: SOCK_DIAG_BY_FAMILY, reply: SOCK_DIAG_BY_FAMILY }): Buffer[] {
  const fd = kind.open?.() ?? sockDiagSocket(what);
  try {
    const req = nativeBuffer(NLMSG_HDRLEN + body.length);
    req.writeUInt32LE(req.length, 0);
    req.writeUInt16LE(kind.type, 4);
    req.writeUInt16LE(NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0), 6);
    req.writeUInt32LE(1, 8);
    body.copy(req, NLMSG_HDRLEN);
    syscall(`sendto(sock_diag) for ${what}`, SYS.sendto, fd, addressOf(req), req.length, 0, 0, 0);
    const buf = nativeBuffer(64 * 1024);
    const out: Buffer[] = [];
    for (;;) {
      const n = Number(syscall(`recvfrom(sock_diag) for ${what}`, SYS.recvfrom, fd, addressOf(buf), buf.length, 0, 0, 0));
      for (let at = 0; at + NLMSG_HDRLEN <= n;) {
        const len = buf.readUInt32LE(at);
        const type = buf.readUInt16LE(at + 4);
        if (len < NLMSG_HDRLEN) return out;
        if (type === NLMSG_DONE) return out;
        if (type === NLMSG_ERROR) {
          const err = -buf.readInt32LE(at + NLMSG_HDRLEN);
          if (err === 0) return out;
          throw new SysError(err, `netlink request for ${what}`);
        }
        if (type === kind.reply) out.push(Buffer.from(buf.subarray(at + NLMSG_HDRLEN, at + len)));
        at += Math.ceil(len / 4) * 4;
      }
      if (!dump && out.length) return out;
    }
  } finally {
    rawSyscall(SYS.close, fd);
  }
}

function sockDiagSocket(what: string): number {
  return Number(syscall(`socket(AF_NETLINK, NETLINK_SOCK_DIAG) for ${what}`, SYS.socket,
    AF.NETLINK, SOCK.RAW | SOCK.CLOEXEC, NETLINK_SOCK_DIAG));
}

/** A sock_diag request answered from the network namespace of task `pid` (its sockets). */
function diagIn(pid: number | undefined, body: Buffer, dump: boolean, what: string): Buffer[] {
  if (pid === undefined) return request(body, dump, what);
  const open = () => inNamespaceOf(pid, 'net', () => sockDiagSocket(what));
  return request(body, dump, what, { type: SOCK_DIAG_BY_FAMILY, reply: SOCK_DIAG_BY_FAMILY, open });
}

/**
 * The unix socket with inode `ino` (undefined if sock_diag does not know it: another netns).
 * `netnsOf`: ask in that task's network namespace instead of stasis's.
 */
export function unixDiag(ino: number, netnsOf?: number): UnixDiag | undefined {
  // unix_diag_req: family, protocol, pad, states, ino, show, cookie[2] (~0: no cookie check)
  const body = Buffer.alloc(24);
  body.writeUInt8(AF.UNIX, 0);
  body.writeUInt32LE(0xffffffff, 4);
  body.writeUInt32LE(ino, 8);
  body.writeUInt32LE(UDIAG_SHOW.NAME | UDIAG_SHOW.VFS | UDIAG_SHOW.PEER | UDIAG_SHOW.ICONS | UDIAG_SHOW.RQLEN, 12);
  body.writeUInt32LE(0xffffffff, 16);
  body.writeUInt32LE(0xffffffff, 20);
  let replies: Buffer[];
  try {
    replies = diagIn(netnsOf, body, false, `unix socket:[${ino}]`);
  } catch (e) {
    if (e instanceof SysError && e.code === 'ENOENT') return undefined;
    throw e;
  }
  const m = replies[0];
  return m && parseUnixDiag(m);
}

/**
 * The listening unix socket in whose accept queue the connection of client `ino` waits (its
 * inode), if any: listeners list their waiting clients in UNIX_DIAG_ICONS.
 */
export function unixListenerOf(ino: number, netnsOf?: number): number | undefined {
  const body = Buffer.alloc(24);
  body.writeUInt8(AF.UNIX, 0);
  body.writeUInt32LE(1 << TCP_LISTEN, 4);
  body.writeUInt32LE(UDIAG_SHOW.ICONS, 12);
  const replies = diagIn(netnsOf, body, true, `the listener of unix socket:[${ino}]`);
  return replies.map(parseUnixDiag).find((d) => d.icons.includes(ino))?.ino;
}

function parseUnixDiag(m: Buffer): UnixDiag {
  // unix_diag_msg: family, type, state, pad, ino, cookie[2]; then attributes
  const a = attrs(m, 16, m.length);
  const vfs = a.get(UNIX_DIAG.VFS);
  const rq = a.get(UNIX_DIAG.RQLEN);
  const icons = a.get(UNIX_DIAG.ICONS);
  const name = a.get(UNIX_DIAG.NAME);
  return {
    ino: m.readUInt32LE(4), type: m.readUInt8(1), state: m.readUInt8(2),
    name: name && name.length ? Buffer.from(name) : undefined,
    vfs: vfs ? { ino: vfs.readUInt32LE(0), dev: vfs.readUInt32LE(4) } : undefined,
    peer: a.get(UNIX_DIAG.PEER)?.readUInt32LE(0) ?? 0,
    icons: icons ? Array.from({ length: icons.length / 4 }, (_, i) => icons.readUInt32LE(4 * i)) : [],
    rqueue: rq?.readUInt32LE(0) ?? 0, wqueue: rq?.readUInt32LE(4) ?? 0,
    shutdown: a.get(UNIX_DIAG.SHUTDOWN)?.readUInt8(0) ?? 0,
  };
}

/**
 * The inet socket with inode `ino` among the `family`/`protocol` sockets in the states of
 * `stateMask` (bit N for state N); undefined when not listed.
 */
export function inetDiag(family: number, protocol: number, stateMask: number, ino: number, netnsOf?: number): InetDiag | undefined {
  return inetDiagAll(family, protocol, stateMask, netnsOf, `inet socket:[${ino}]`).find((d) => d.ino === ino);
}

/** Every inet socket of `family`/`protocol` in a state of `stateMask` (in stasis's network namespace, or task `netnsOf`'s). */
export function inetDiagAll(family: number, protocol: number, stateMask: number, netnsOf?: number, what = 'inet sockets'): InetDiag[] {
  // inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 bytes, zero: any)
  const body = Buffer.alloc(56);
  body.writeUInt8(family, 0);
  body.writeUInt8(protocol, 1);
  body.writeUInt32LE(stateMask >>> 0, 4);
  return diagIn(netnsOf, body, true, what).map((m) => {
    // inet_diag_msg: family, state, timer, retrans, sockid{sport, dport, src[16], dst[16], if,
    // cookie[2]}, expires, rqueue, wqueue, uid, inode
    const fam = m.readUInt8(0);
    const alen = fam === AF.INET ? 4 : 16;
    return {
      family: fam, state: m.readUInt8(1), sport: m.readUInt16BE(4), dport: m.readUInt16BE(6),
      src: Buffer.from(m.subarray(8, 8 + alen)), dst: Buffer.from(m.subarray(24, 24 + alen)),
      rqueue: m.readUInt32LE(56), wqueue: m.readUInt32LE(60), ino: m.readUInt32LE(68),
      shutdown: attrs(m, 72, m.length).get(INET_DIAG_SHUTDOWN)?.readUInt8(0) ?? 0,
    };
  });
}

function packetRing(b: Buffer | undefined): PacketRing | undefined {
  if (!b || b.length < 28) return undefined;
  const [block_size, block_nr, frame_size, frame_nr, retire_tmo, sizeof_priv, features] =
    Array.from({ length: 7 }, (_, i) => b.readUInt32LE(4 * i)) as [number, number, number, number, number, number, number];
  return { block_size, block_nr, frame_size, frame_nr, retire_tmo, sizeof_priv, features };
}

/** The packet socket with inode `ino` in the network namespace of task `netnsOf`; undefined when not listed. */
export function packetDiag(ino: number, netnsOf: number): PacketDiag | undefined {
  // packet_diag_req: family, protocol, pad, ino, show, cookie[2] (sockets are only dumped, all of them)
  const body = Buffer.alloc(20);
  body.writeUInt8(AF.PACKET, 0);
  body.writeUInt32LE(ino, 4);
  body.writeUInt32LE(PACKET_SHOW.INFO | PACKET_SHOW.MCLIST | PACKET_SHOW.RING_CFG, 8);
  for (const m of diagIn(netnsOf, body, true, `packet socket:[${ino}]`)) {
    // packet_diag_msg: family u8, type u8, num u16 (host order), ino u32, cookie[2]
    if (m.readUInt32LE(4) !== ino) continue;
    const a = attrs(m, 16, m.length);
    const info = a.get(PACKET_DIAG.INFO);
    const mc = a.get(PACKET_DIAG.MCLIST) ?? Buffer.alloc(0);
    const mclist = [];
    // packet_diag_mclist: index u32, count u32, type u16, alen u16, addr[32]
    for (let at = 0; at + 44 <= mc.length; at += 44) {
      const alen = Math.min(mc.readUInt16LE(at + 10), 32);
      mclist.push({ index: mc.readUInt32LE(at), count: mc.readUInt32LE(at + 4), type: mc.readUInt16LE(at + 8), addr: Buffer.from(mc.subarray(at + 12, at + 12 + alen)) });
    }
    return {
      ino, type: m.readUInt8(1), protocol: m.readUInt16LE(2),
      index: info?.readUInt32LE(0) ?? 0, version: info?.readUInt32LE(4) ?? 0, reserve: info?.readUInt32LE(8) ?? 0,
      copyThresh: info?.readUInt32LE(12) ?? 0, tstamp: info?.readUInt32LE(16) ?? 0, flags: info?.readUInt32LE(20) ?? 0,
      mclist, rxRing: packetRing(a.get(PACKET_DIAG.RX_RING)), txRing: packetRing(a.get(PACKET_DIAG.TX_RING)),
    };
  }
  return undefined;
}

/** A network device as RTM_GETLINK reports it (ifinfomsg and the attributes stasis uses). */
export interface LinkInfo {
  ifindex: number;
  /** ARPHRD_* (772 loopback, 1 ethernet). */
  arpType: number;
  /** IFF_* flags. */
  flags: number;
  name: string;
  mtu: number;
  address?: Buffer;
  /** IFLA_INFO_KIND: veth, bridge, dummy, ... (absent for lo). */
  kind?: string;
  /** IFLA_LINK: the peer's ifindex (veth), in the namespace linkNetnsid names when set. */
  link?: number;
  linkNetnsid?: number;
  master?: number;
}

const IFLA = { ADDRESS: 1, IFNAME: 3, MTU: 4, LINK: 5, MASTER: 10, LINKINFO: 18, LINK_NETNSID: 37 } as const;
const IFLA_INFO_KIND = 1;

/** Every link of the network namespace of process `pid`. */
export function listLinks(pid: number): LinkInfo[] {
  const open = () => inNamespaceOf(pid, 'net', () => Number(syscall('socket(AF_NETLINK, NETLINK_ROUTE)', SYS.socket,
    AF.NETLINK, SOCK.RAW | SOCK.CLOEXEC, NETLINK_ROUTE)));
  const replies = request(Buffer.alloc(16), true, `the links of process ${pid}'s network namespace`,
    { type: RTM_GETLINK, reply: RTM_NEWLINK, open });
  return replies.map((m) => {
    // ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32; then attributes
    const a = attrs(m, 16, m.length);
    const info = a.get(IFLA.LINKINFO);
    const kind = info ? attrs(info, 0, info.length).get(IFLA_INFO_KIND) : undefined;
    const address = a.get(IFLA.ADDRESS);
    const link = a.get(IFLA.LINK)?.readUInt32LE(0);
    const ifindex = m.readInt32LE(4);
    return {
      ifindex, arpType: m.readUInt16LE(2), flags: m.readUInt32LE(8), name: cString(a.get(IFLA.IFNAME) ?? Buffer.alloc(0)),
      mtu: a.get(IFLA.MTU)?.readUInt32LE(0) ?? 0,
      ...(address ? { address: Buffer.from(address) } : {}),
      ...(kind ? { kind: cString(kind) } : {}),
      ...(link !== undefined && link !== ifindex ? { link } : {}),
      ...(a.has(IFLA.LINK_NETNSID) ? { linkNetnsid: a.get(IFLA.LINK_NETNSID)!.readInt32LE(0) } : {}),
      ...(a.has(IFLA.MASTER) ? { master: a.get(IFLA.MASTER)!.readUInt32LE(0) } : {}),
    };
  });
}
