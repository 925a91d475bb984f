// The kernel's TCP repair mode (TCP_REPAIR, linux/tcp.h), on a socket stasis holds itself (a
// copy of a task's descriptor taken with pidfd_getfd, or one made for a restore and handed to the
// task afterwards). A socket in repair mode sends nothing: its sequence numbers, queues, options
// and window can be read and written, `connect` establishes it without a handshake, and closing
// it sends neither FIN nor RST.
//
// A half-closed connection also needs the FINs: ours is queued by shutdown (in repair mode:
// marked as sent, or sent for real when no queue is selected), the peer's is handed to the socket
// as a segment stasis forges on a raw socket (sendForgedSegment), carrying the repair mark so
// that the network lock lets it through.

import { SYS } from './arch.js';
import { errnoName, isErrorResult, SysError } from './errno.js';
import { addressOf, nativeBuffer, rawSyscall, syscall } from './native.js';
import { AF, IPPROTO, MSG, SHUT, SOCK, SO, SOL_SOCKET, sockaddrInet } from './socket.js';

const SOL_TCP = IPPROTO.TCP;
export const TCP = {
  MAXSEG: 2, INFO: 11, REPAIR: 19, REPAIR_QUEUE: 20, QUEUE_SEQ: 21, REPAIR_OPTIONS: 22, TIMESTAMP: 24,
  REPAIR_WINDOW: 29,
} as const;
/** TCP_REPAIR's values: on, off, off without the window probe the kernel sends by default. */
const REPAIR_ON = 1;
const REPAIR_OFF = 0;
export const QUEUE = { NONE: 0, RECV: 1, SEND: 2 } as const;
/** tcp_info.tcpi_options bits, which CRIU keeps as tcp_stream_entry.opt_mask. */
export const TCPI_OPT = { TIMESTAMPS: 1, SACK: 2, WSCALE: 4 } as const;
/** TCP option kinds for TCP_REPAIR_OPTIONS. */
const TCPOPT = { MSS: 2, WINDOW: 3, SACK_PERM: 4, TIMESTAMP: 8 } as const;
const EAGAIN = 11;
const SO_REUSEADDR = 2;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SIOCINQ = 0x541b;
const SIOCOUTQ = 0x5411;
const SIOCOUTQNSD = 0x894b;

export interface RepairWindow {
  snd_wl1: number; snd_wnd: number; max_window: number; rcv_wnd: number; rcv_wup: number;
}

export interface TcpInfo {
  state: number;
  options: number;
  sndWscale: number;
  rcvWscale: number;
}

function call(what: string, nr: number, ...args: (number | bigint)[]): bigint {
  return syscall(what, nr, ...args);
}

/** A TCP socket descriptor of stasis's own, driven through repair mode. */
export class RepairSocket {
  /**
   * SO_REUSEADDR as the socket had it: entering and leaving repair mode overwrite it (the
   * kernel forces reuse in repair mode and clears it on the way out), so it is put back.
   */
  reuse = 0;

  constructor(readonly fd: number, readonly what: string) {}

  /** A new socket of stasis's own (a connection to rebuild). */
  static open(family: number, type: number, proto: number, what: string): RepairSocket {
    const fd = Number(rawSyscall(SYS.socket, family, type, proto));
    if (fd < 0) throw new Error(`${what}: socket failed with ${errnoName(-fd)}`);
    return new RepairSocket(fd, what);
  }

  /** bind(), to the connection's local address. */
  bind(to: { addr: Buffer; len: number }): void {
    const r = rawSyscall(SYS.bind, this.fd, addressOf(to.addr), to.len);
    if (isErrorResult(r)) throw new Error(`${this.what}: bind failed with ${errnoName(Number(-r))}`);
  }

  /** connect(): in repair mode, established at once, nothing sent. */
  connect(to: { addr: Buffer; len: number }): void {
    const r = rawSyscall(SYS.connect, this.fd, addressOf(to.addr), to.len);
    if (isErrorResult(r)) throw new Error(`${this.what}: connect (repair) failed with ${errnoName(Number(-r))}`);
  }

  private setInt(name: number, value: number, label: string): void {
    const b = nativeBuffer(4);
    b.writeInt32LE(value, 0);
    call(`${this.what}: setsockopt(${label})`, SYS.setsockopt, this.fd, SOL_TCP, name, addressOf(b), 4);
  }

  private get(name: number, size: number, label: string): Buffer {
    const b = nativeBuffer(size);
    const len = nativeBuffer(4);
    len.writeUInt32LE(size, 0);
    call(`${this.what}: getsockopt(${label})`, SYS.getsockopt, this.fd, SOL_TCP, name, addressOf(b), addressOf(len));
    return Buffer.from(b.subarray(0, len.readUInt32LE(0)));
  }

  private ioctlInt(req: number, label: string): number {
    const b = nativeBuffer(4);
    call(`${this.what}: ioctl(${label})`, SYS.ioctl, this.fd, req, addressOf(b));
    return b.readInt32LE(0);
  }

  /**
   * Room for the queues about to be filled: SO_SNDBUFFORCE/SO_RCVBUFFORCE with the sizes the
   * socket had (the kernel doubles them; the task's own options are set again afterwards).
   */
  bufferSizes(sndbuf: number, rcvbuf: number): void {
    const b = nativeBuffer(4);
    for (const [name, v, label] of [[32, sndbuf, 'SO_SNDBUFFORCE'], [33, rcvbuf, 'SO_RCVBUFFORCE']] as const) {
      if (!v) continue;
      b.writeInt32LE(v, 0);
      call(`${this.what}: setsockopt(${label})`, SYS.setsockopt, this.fd, SOL_SOCKET, name, addressOf(b), 4);
    }
  }

  /** SO_REUSEADDR as it is now (kept in `reuse` for leaving repair mode). */
  readReuse(): number {
    this.reuse = this.sockInt(SO_REUSEADDR);
    return this.reuse;
  }

  repairOn(): void {
    this.setInt(TCP.REPAIR, REPAIR_ON, 'TCP_REPAIR on');
  }

  /** Leave repair mode: the connection is live again (the kernel probes the peer's window). */
  repairOff(): void {
    this.setInt(TCP.REPAIR, REPAIR_OFF, 'TCP_REPAIR off');
    this.putReuse();
  }

  /** Leave repair mode if set; never throws (for rollback paths). */
  tryRepairOff(): boolean {
    const b = nativeBuffer(4);
    const ok = !isErrorResult(rawSyscall(SYS.setsockopt, this.fd, SOL_TCP, TCP.REPAIR, addressOf(b), 4));
    if (ok) this.putReuse();
    return ok;
  }

  private putReuse(): void {
    const b = nativeBuffer(4);
    b.writeInt32LE(this.reuse, 0);
    rawSyscall(SYS.setsockopt, this.fd, SOL_SOCKET, SO_REUSEADDR, addressOf(b), 4);
  }

  /** shutdown(SHUT_WR): a FIN queued after the send queue (what repair mode does with it: see above). */
  shutdownWrite(): void {
    call(`${this.what}: shutdown(SHUT_WR)`, SYS.shutdown, this.fd, SHUT.WR);
  }

  info(): TcpInfo {
    const b = this.get(TCP.INFO, 104, 'TCP_INFO');
    const ws = b.readUInt8(6);
    return { state: b.readUInt8(0), options: b.readUInt8(5), sndWscale: ws & 0xf, rcvWscale: ws >> 4 };
  }

  selectQueue(q: number): void {
    this.setInt(TCP.REPAIR_QUEUE, q, 'TCP_REPAIR_QUEUE');
  }

  /** The selected queue's sequence number (the next byte after it). */
  queueSeq(): number {
    return this.get(TCP.QUEUE_SEQ, 4, 'TCP_QUEUE_SEQ').readUInt32LE(0);
  }

  setQueueSeq(seq: number): void {
    const b = nativeBuffer(4);
    b.writeUInt32LE(seq >>> 0, 0);
    call(`${this.what}: setsockopt(TCP_QUEUE_SEQ)`, SYS.setsockopt, this.fd, SOL_TCP, TCP.QUEUE_SEQ, addressOf(b), 4);
  }

  /** Bytes in the receive queue, in the send queue, and not yet sent of the send queue. */
  queueLengths(): { inq: number; outq: number; unsent: number } {
    return { inq: this.ioctlInt(SIOCINQ, 'SIOCINQ'), outq: this.ioctlInt(SIOCOUTQ, 'SIOCOUTQ'), unsent: this.ioctlInt(SIOCOUTQNSD, 'SIOCOUTQNSD') };
  }

  /** The selected queue's first `len` bytes, left in place (MSG_PEEK). */
  peekQueue(len: number): Buffer {
    if (len === 0) return Buffer.alloc(0);
    const b = nativeBuffer(len, false);
    const r = call(`${this.what}: recv(MSG_PEEK)`, SYS.recvfrom, this.fd, addressOf(b), len, MSG.PEEK | MSG.DONTWAIT, 0, 0);
    if (Number(r) !== len) throw new Error(`${this.what}: the queue gave ${r} bytes of ${len}`);
    return Buffer.from(b);
  }

  /**
   * Put `data` into the selected queue (in repair mode a send fills the queue, sending nothing).
   * A queue that outgrows the socket's buffer gets a bigger one (`queue` says which).
   */
  fillQueue(data: Uint8Array, queue: 'send' | 'recv' = 'send'): void {
    let off = 0;
    const b = nativeBuffer(data.length, false);
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(b);
    let grown = 0;
    while (off < data.length) {
      const r = rawSyscall(SYS.sendto, this.fd, addressOf(b) + BigInt(off), data.length - off, MSG.DONTWAIT | MSG.NOSIGNAL, 0, 0);
      if (isErrorResult(r)) {
        if (Number(-r) !== EAGAIN || grown++ > 8) throw new SysError(Number(-r), `${this.what}: filling a queue (${off} of ${data.length} bytes in)`);
        const now = this.sockInt(queue === 'send' ? SO_SNDBUF : SO_RCVBUF);
        this.bufferSizes(queue === 'send' ? now : 0, queue === 'recv' ? now : 0);
        continue;
      }
      off += Number(r);
    }
  }

  private sockInt(name: number): number {
    const b = nativeBuffer(4);
    const len = nativeBuffer(4);
    len.writeUInt32LE(4, 0);
    call(`${this.what}: getsockopt(${name})`, SYS.getsockopt, this.fd, SOL_SOCKET, name, addressOf(b), addressOf(len));
    return b.readInt32LE(0);
  }

  /** Send `data` on the live connection (the unsent tail of a send queue), all of it. */
  send(data: Uint8Array): void {
    this.fillQueue(data);
  }

  mss(): number {
    return this.get(TCP.MAXSEG, 4, 'TCP_MAXSEG').readUInt32LE(0);
  }

  timestamp(): number {
    return this.get(TCP.TIMESTAMP, 4, 'TCP_TIMESTAMP').readUInt32LE(0);
  }

  setTimestamp(ts: number): void {
    const b = nativeBuffer(4);
    b.writeUInt32LE(ts >>> 0, 0);
    call(`${this.what}: setsockopt(TCP_TIMESTAMP)`, SYS.setsockopt, this.fd, SOL_TCP, TCP.TIMESTAMP, addressOf(b), 4);
  }

  window(): RepairWindow {
    const b = this.get(TCP.REPAIR_WINDOW, 20, 'TCP_REPAIR_WINDOW');
    const [snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup] = [0, 4, 8, 12, 16].map((o) => b.readUInt32LE(o)) as
      [number, number, number, number, number];
    return { snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup };
  }

  setWindow(w: RepairWindow): void {
    const b = nativeBuffer(20);
    [w.snd_wl1, w.snd_wnd, w.max_window, w.rcv_wnd, w.rcv_wup].forEach((v, i) => b.writeUInt32LE(v >>> 0, 4 * i));
    call(`${this.what}: setsockopt(TCP_REPAIR_WINDOW)`, SYS.setsockopt, this.fd, SOL_TCP, TCP.REPAIR_WINDOW, addressOf(b), 20);
  }

  /** The options negotiated at the handshake: MSS, window scaling, SACK, timestamps. */
  setOptions(o: { mss: number; optMask: number; sndWscale: number; rcvWscale: number }): void {
    const opts: [number, number][] = [[TCPOPT.MSS, o.mss]];
    if (o.optMask & TCPI_OPT.WSCALE) opts.push([TCPOPT.WINDOW, o.sndWscale + (o.rcvWscale << 16)]);
    if (o.optMask & TCPI_OPT.SACK) opts.push([TCPOPT.SACK_PERM, 0]);
    if (o.optMask & TCPI_OPT.TIMESTAMPS) opts.push([TCPOPT.TIMESTAMP, 0]);
    const b = nativeBuffer(8 * opts.length);
    opts.forEach(([code, val], i) => {
      b.writeUInt32LE(code, 8 * i);
      b.writeUInt32LE(val >>> 0, 8 * i + 4);
    });
    call(`${this.what}: setsockopt(TCP_REPAIR_OPTIONS)`, SYS.setsockopt, this.fd, SOL_TCP, TCP.REPAIR_OPTIONS, addressOf(b), b.length);
  }
}

/** TCP header flags. */
export const TH = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;
const IPPROTO_RAW = 255;

/** A TCP segment without options or data, from `src` to `dst` (addresses of 4 or 16 bytes). */
export interface Segment {
  family: number;
  src: Buffer;
  sport: number;
  dst: Buffer;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
}

function v4Mapped(a: Buffer): boolean {
  return a.length === 16 && a.subarray(0, 10).every((b) => b === 0) && a[10] === 0xff && a[11] === 0xff;
}

/** The ones' complement sum of `parts` (the Internet checksum), folded to 16 bits. */
function checksum(...parts: Buffer[]): number {
  let sum = 0;
  for (const p of parts) {
    for (let i = 0; i + 1 < p.length; i += 2) sum += p.readUInt16BE(i);
    if (p.length % 2) sum += p[p.length - 1]! << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * The IP packet (header and TCP segment) of `s`, with its checksums; an IPv6 connection between
 * v4-mapped addresses travels as IPv4.
 */
export function segmentPacket(s: Segment): { family: number; packet: Buffer; dst: Buffer } {
  const v4 = s.family === AF.INET || (v4Mapped(s.src) && v4Mapped(s.dst));
  const src = v4 ? s.src.subarray(s.src.length - 4) : s.src;
  const dst = v4 ? s.dst.subarray(s.dst.length - 4) : s.dst;
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(s.sport, 0);
  tcp.writeUInt16BE(s.dport, 2);
  tcp.writeUInt32BE(s.seq >>> 0, 4);
  tcp.writeUInt32BE(s.ack >>> 0, 8);
  tcp[12] = 5 << 4; // header length: 5 words, no options
  tcp[13] = s.flags;
  tcp.writeUInt16BE(Math.min(s.window, 0xffff), 14);
  const pseudo = Buffer.alloc(v4 ? 12 : 40);
  if (v4) {
    src.copy(pseudo, 0);
    dst.copy(pseudo, 4);
    pseudo[9] = IPPROTO.TCP;
    pseudo.writeUInt16BE(tcp.length, 10);
  } else {
    src.copy(pseudo, 0);
    dst.copy(pseudo, 16);
    pseudo.writeUInt32BE(tcp.length, 32);
    pseudo[39] = IPPROTO.TCP;
  }
  tcp.writeUInt16BE(checksum(pseudo, tcp), 16);
  let ip: Buffer;
  if (v4) {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + tcp.length, 2);
    ip[8] = 64; // TTL
    ip[9] = IPPROTO.TCP;
    src.copy(ip, 12);
    dst.copy(ip, 16);
    ip.writeUInt16BE(checksum(ip), 10);
  } else {
    ip = Buffer.alloc(40);
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(tcp.length, 4);
    ip[6] = IPPROTO.TCP;
    ip[7] = 64; // hop limit
    src.copy(ip, 8);
    dst.copy(ip, 24);
  }
  return { family: v4 ? AF.INET : AF.INET6, packet: Buffer.concat([ip, tcp]), dst: Buffer.from(dst) };
}

/**
 * A raw socket (IPPROTO_RAW: the packets carry their own IP header) of the calling thread's
 * network namespace whose packets carry `mark`; closed by the caller.
 */
export function rawPacketSocket(family: number, mark: number): number {
  const fd = Number(call(`socket(${family === AF.INET ? 'AF_INET' : 'AF_INET6'}, SOCK_RAW, IPPROTO_RAW)`, SYS.socket, family, SOCK.RAW | SOCK.CLOEXEC, IPPROTO_RAW));
  const b = nativeBuffer(4);
  b.writeUInt32LE(mark >>> 0, 0);
  const r = rawSyscall(SYS.setsockopt, fd, SOL_SOCKET, SO.MARK, addressOf(b), 4);
  if (isErrorResult(r)) {
    rawSyscall(SYS.close, fd);
    throw new SysError(Number(-r), 'setsockopt(SO_MARK) on a raw socket');
  }
  return fd;
}

/**
 * Send segment `s` as the peer would (a forged packet to one of this namespace's own sockets),
 * its packets carrying `mark`; on raw socket `fd` when given (of the right family), else on one
 * made for it here, in the calling thread's network namespace.
 */
export function sendForgedSegment(s: Segment, mark: number, fd?: number): void {
  const { family, packet, dst } = segmentPacket(s);
  const own = fd === undefined;
  const sock = fd ?? rawPacketSocket(family, mark);
  try {
    const b = nativeBuffer(packet.length);
    packet.copy(b);
    const to = sockaddrInet(family, dst, 0);
    call('sendto on a raw socket (a forged TCP segment)', SYS.sendto, sock, addressOf(b), b.length, 0, addressOf(to.addr), to.len);
  } finally {
    if (own) rawSyscall(SYS.close, sock);
  }
}
