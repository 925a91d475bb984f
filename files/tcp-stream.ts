// An established TCP connection (CRIU's sk-tcp.c and libsoccr): tcp-stream-INO.img beside the
// socket's inet_sk_entry, holding what TCP repair mode reads — the sequence numbers of both
// queues, the receive queue not yet read by the task, the send queue (sent but not acknowledged,
// then not yet sent), the options negotiated at the handshake (MSS, window scaling, SACK,
// timestamps and the timestamp clock), and the window.
//
// Dump: stasis takes a copy of the task's descriptor (pidfd_getfd) and puts the socket into
// repair mode, where it sends nothing; the peer's packets are dropped meanwhile by the network
// lock (net-ns/network-lock.ts). The socket stays in repair mode until the dump ends: the tasks
// are killed (the socket closes silently, the lock stays for the restore), or, when the tree
// runs on or the dump fails, it leaves repair mode and carries on as if nothing happened.
//
// Restore: stasis makes the socket itself in the task's network namespace, in repair mode:
// bind, both queues' sequence numbers, connect (no handshake in repair mode), the options, the
// timestamp clock, the queues' contents, the window; the task gets a copy. When the whole tree is
// ready, just before it runs, the sockets leave repair mode and the unsent tail of each send
// queue is sent; the lock is lifted after that. A failed restore closes them still in repair
// mode: nothing reaches the peer.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { isErrorResult, errnoName } from '../sys/errno.js';
import { rawSyscall } from '../sys/native.js';
import { sockaddrInet } from '../sys/socket.js';
import { QUEUE, RepairSocket, TCPI_OPT, takeTaskFd } from '../sys/tcp-repair.js';
import { addressOf } from '../sys/native.js';
import type { DumpWatchdog } from '../net-ns/watchdog.js';

export function tcpStreamImageName(ino: number): string {
  return `tcp-stream-${ino.toString(16)}.img`;
}

/**
 * The sockets of one dump that are in repair mode, to be let go one way or the other; each is
 * announced to the dump's watchdog before it enters repair mode (net-ns/watchdog.ts).
 */
export class RepairedSockets {
  private readonly held: RepairSocket[] = [];

  constructor(private readonly watchdog?: DumpWatchdog) {}

  /** Task `pid`'s socket `fd`, a copy of it in `s`: into repair mode, held until the dump ends. */
  enter(pid: number, fd: number, s: RepairSocket): void {
    this.watchdog?.repairing(pid, fd, s.readReuse());
    s.repairOn();
    this.held.push(s);
  }

  get size(): number {
    return this.held.length;
  }

  /** The tree runs on (or the dump failed): every connection leaves repair mode. */
  resume(): void {
    for (const s of this.held.splice(0)) {
      s.tryRepairOff();
      fs.closeSync(s.fd);
    }
  }

  /** The tree was killed: the copies go, still in repair mode (nothing is sent). */
  drop(): void {
    for (const s of this.held.splice(0)) fs.closeSync(s.fd);
  }
}

export interface DumpedStream {
  entry: Record<string, unknown>;
  queues: Buffer;
}

/**
 * Put the task's socket `fd` into repair mode (kept in `held`) and read its connection.
 * `what` names it in errors.
 */
export function dumpTcpStream(pid: number, fd: number, what: string, held: RepairedSockets): DumpedStream {
  const s = new RepairSocket(takeTaskFd(pid, fd), what);
  try {
    held.enter(pid, fd, s);
  } catch (e) {
    fs.closeSync(s.fd);
    throw e;
  }
  const info = s.info();
  const { inq, outq, unsent } = s.queueLengths();
  s.selectQueue(QUEUE.RECV);
  const inqSeq = s.queueSeq();
  const inData = s.peekQueue(inq);
  s.selectQueue(QUEUE.SEND);
  const outqSeq = s.queueSeq();
  const outData = s.peekQueue(outq);
  s.selectQueue(QUEUE.NONE);
  const entry: Record<string, unknown> = {
    inq_len: inq, inq_seq: inqSeq, outq_len: outq, outq_seq: outqSeq, opt_mask: info.options,
    snd_wscale: info.sndWscale, mss_clamp: s.mss(), rcv_wscale: info.rcvWscale, unsq_len: unsent,
  };
  if (info.options & TCPI_OPT.TIMESTAMPS) entry.timestamp = s.timestamp();
  Object.assign(entry, s.window());
  return { entry, queues: Buffer.concat([inData, outData]) };
}

/** A restored connection waiting, in repair mode, for the tree to be ready. */
export interface PendingStream {
  socket: RepairSocket;
  /** The unsent tail of the send queue, sent once the connection is live. */
  unsent: Buffer;
}

/**
 * Make the connection of `e` (an inet_sk_entry) and `stream` (its tcp-stream image) as a socket
 * of stasis's own, in repair mode; bound and connected.
 */
export function restoreTcpStream(e: Record<string, any>, stream: { message: Record<string, any>; extra?: Uint8Array },
  what: string, addrBytes: (w: readonly number[]) => Buffer): PendingStream {
  const family = Number(e.family);
  const fd = Number(rawSyscall(SYS.socket, family, Number(e.type), Number(e.proto)));
  if (fd < 0) throw new Error(`${what}: socket failed with ${errnoName(-fd)}`);
  const s = new RepairSocket(fd, what);
  try {
    s.repairOn();
    s.reuse = e.opts?.reuseaddr ? 1 : 0; // what leaving repair mode puts back
    const m = stream.message;
    const inqLen = Number(m.inq_len);
    const outqLen = Number(m.outq_len);
    const unsentLen = Number(m.unsq_len ?? 0);
    const queues = Buffer.from(stream.extra ?? new Uint8Array());
    if (queues.length !== inqLen + outqLen) throw new Error(`${what}: its tcp-stream image holds ${queues.length} bytes of queues, not ${inqLen + outqLen}`);
    // The queues take memory: as much as the socket had (the sizes grow by themselves as a
    // connection goes; a new socket starts small), with room for the per-packet overhead.
    s.bufferSizes(Math.max(Number(e.opts?.so_sndbuf ?? 0), 2 * outqLen), Math.max(Number(e.opts?.so_rcvbuf ?? 0), 2 * inqLen));
    const bindTo = sockaddrInet(family, addrBytes(e.src_addr ?? []), Number(e.src_port));
    let r = rawSyscall(SYS.bind, fd, addressOf(bindTo.addr), bindTo.len);
    if (isErrorResult(r)) throw new Error(`${what}: bind failed with ${errnoName(Number(-r))}`);
    s.selectQueue(QUEUE.SEND);
    s.setQueueSeq(Number(m.outq_seq) - outqLen);
    s.selectQueue(QUEUE.RECV);
    s.setQueueSeq(Number(m.inq_seq) - inqLen);
    s.selectQueue(QUEUE.NONE);
    const to = sockaddrInet(family, addrBytes(e.dst_addr ?? []), Number(e.dst_port));
    r = rawSyscall(SYS.connect, fd, addressOf(to.addr), to.len);
    if (isErrorResult(r)) throw new Error(`${what}: connect (repair) failed with ${errnoName(Number(-r))}`);
    const optMask = Number(m.opt_mask ?? 0);
    s.setOptions({ mss: Number(m.mss_clamp), optMask, sndWscale: Number(m.snd_wscale ?? 0), rcvWscale: Number(m.rcv_wscale ?? 0) });
    if (optMask & TCPI_OPT.TIMESTAMPS && m.timestamp !== undefined) s.setTimestamp(Number(m.timestamp));
    s.selectQueue(QUEUE.RECV);
    if (inqLen) s.fillQueue(queues.subarray(0, inqLen), 'recv');
    s.selectQueue(QUEUE.SEND);
    const sentLen = outqLen - unsentLen;
    if (sentLen > 0) s.fillQueue(queues.subarray(inqLen, inqLen + sentLen));
    s.selectQueue(QUEUE.NONE);
    if (m.rcv_wnd !== undefined) {
      s.setWindow({
        snd_wl1: Number(m.snd_wl1), snd_wnd: Number(m.snd_wnd), max_window: Number(m.max_window),
        rcv_wnd: Number(m.rcv_wnd), rcv_wup: Number(m.rcv_wup),
      });
    }
    return { socket: s, unsent: Buffer.from(queues.subarray(inqLen + Math.max(0, sentLen))) };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** The tree is ready: each connection goes live and sends what it had not sent yet. */
export function goLive(pending: readonly PendingStream[]): void {
  for (const p of pending) {
    p.socket.repairOff();
    if (p.unsent.length) p.socket.send(p.unsent);
  }
}

/** Stasis's copies go (live connections stay with their tasks; ones in repair mode close silently). */
export function closeStreams(pending: readonly PendingStream[]): void {
  for (const p of pending) fs.closeSync(p.socket.fd);
}
