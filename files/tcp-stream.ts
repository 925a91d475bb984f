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
//
// Half-closed connections (FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING) are kept as CRIU keeps
// them: the state in inet_sk_entry.state, the stream as for an established one, where each FIN
// has taken its place in a sequence — ours (we shut down writing) is the last byte of the send
// sequence (outq_seq counts it; outq_len and unsq_len do not), the peer's the last of the
// receive sequence (inq_seq counts it; inq_len does not). The restore makes the connection
// established one sequence number short of each FIN, then puts the FINs back in the order the
// state tells: ours by shutdown(SHUT_WR), the peer's as a segment forged from the peer on a raw
// socket (sys/tcp-repair.ts) carrying the repair mark, which the lock lets through. An
// acknowledged FIN of ours (FIN_WAIT2) is queued as sent in repair mode, then acknowledged by a
// forged ACK; one still unacknowledged waits for the connection to go live (after the unsent
// tail of its send queue), and so does a peer's FIN that came after it (CLOSING): so it leaves at
// once instead of after a retransmission timeout.

import fs from 'node:fs';
import { takeTaskFd } from '../sys/native.js';
import { sockaddrInet } from '../sys/socket.js';
import {
  QUEUE, RepairSocket, TCPI_OPT, TH, rawPacketSocket, segmentPacket, sendForgedSegment, type Segment,
} from '../sys/tcp-repair.js';
import { REPAIR_MARK } from '../net-ns/network-lock.js';
import type { NetworkWatchdog } from '../net-ns/watchdog.js';

/** The kernel's TCP states of a connection (include/net/tcp_states.h). */
export const TCPS = { ESTABLISHED: 1, FIN_WAIT1: 4, FIN_WAIT2: 5, CLOSE_WAIT: 8, LAST_ACK: 9, CLOSING: 11 } as const;
/** States in which we sent a FIN (we shut down writing), and in which the peer did. */
const OUR_FIN: ReadonlySet<number> = new Set([TCPS.FIN_WAIT1, TCPS.FIN_WAIT2, TCPS.LAST_ACK, TCPS.CLOSING]);
const PEER_FIN: ReadonlySet<number> = new Set([TCPS.CLOSE_WAIT, TCPS.LAST_ACK, TCPS.CLOSING]);

/** Whether a TCP socket in `state` is a connection dumped with its stream (tcp-stream-INO.img). */
export function isStreamState(state: number): boolean {
  return state === TCPS.ESTABLISHED || OUR_FIN.has(state) || PEER_FIN.has(state);
}

const STATE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(TCPS).map(([k, v]) => [v, k]));

export function tcpStreamImageName(ino: number): string {
  return `tcp-stream-${ino.toString(16)}.img`;
}

/**
 * The sockets of one dump that are in repair mode, to be let go one way or the other; each is
 * announced to the dump's watchdog before it enters repair mode (net-ns/watchdog.ts).
 */
export class RepairedSockets {
  private readonly held: RepairSocket[] = [];

  constructor(private readonly watchdog?: NetworkWatchdog) {}

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
  /** The connection's state as read in repair mode (a FIN may have come since it was first looked at). */
  state: number;
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
  if (!isStreamState(info.state)) throw new Error(`${what}: the connection went to state ${info.state} while it was dumped`);
  let { inq, outq, unsent } = s.queueLengths();
  // Our FIN is in the send queue's counts (not a byte of data); the peer's is left out of SIOCINQ.
  if (OUR_FIN.has(info.state)) {
    if (outq) outq--;
    if (unsent) unsent--;
  }
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
  return { state: info.state, entry, queues: Buffer.concat([inData, outData]) };
}

/** A restored connection waiting, in repair mode, for the tree to be ready. */
export interface PendingStream {
  socket: RepairSocket;
  /** The unsent tail of the send queue, sent once the connection is live. */
  unsent: Buffer;
  /** FINs put back once it is live, after `unsent` (see the head of this file). */
  live: FinStep[];
  /** The raw socket for a peer's FIN among `live` (made in the connection's network namespace). */
  raw?: number;
  /** The peer's segments, as the steps forge them. */
  peer: Omit<Segment, 'flags'>;
}

/** A FIN put back: ours (shutdown), the peer's (forged), the peer's ACK of ours (forged). */
type FinStep = 'our-fin' | 'peer-fin' | 'peer-ack';
const STEP_NAMES: Record<FinStep, string> = { 'our-fin': 'our FIN', 'peer-fin': "the peer's FIN", 'peer-ack': "the peer's ACK of our FIN" };

/**
 * What puts a half-closed connection in `state` back, in order, from an established one: in
 * repair mode, and once live (an unacknowledged FIN of ours, and what follows it).
 */
function finSteps(state: number): { repair: FinStep[]; live: FinStep[] } {
  switch (state) {
    case TCPS.FIN_WAIT1: return { repair: [], live: ['our-fin'] };
    case TCPS.FIN_WAIT2: return { repair: ['our-fin', 'peer-ack'], live: [] };
    case TCPS.CLOSE_WAIT: return { repair: ['peer-fin'], live: [] };
    case TCPS.LAST_ACK: return { repair: ['peer-fin'], live: ['our-fin'] };
    case TCPS.CLOSING: return { repair: [], live: ['our-fin', 'peer-fin'] };
    default: return { repair: [], live: [] };
  }
}

/** The state a step leads to from `from`. */
function nextState(from: number, step: FinStep): number {
  if (step === 'peer-ack') return TCPS.FIN_WAIT2;
  if (step === 'our-fin') return from === TCPS.CLOSE_WAIT ? TCPS.LAST_ACK : TCPS.FIN_WAIT1;
  return from === TCPS.FIN_WAIT1 ? TCPS.CLOSING : TCPS.CLOSE_WAIT;
}

/**
 * Take `steps` on `p`'s socket (in repair mode or live). A forged segment is taken by the socket
 * at once (the loopback delivers it inside sendto), which its new state confirms.
 */
function takeSteps(p: PendingStream, steps: readonly FinStep[], repair: boolean): void {
  const s = p.socket;
  for (const step of steps) {
    const want = nextState(s.info().state, step);
    if (step === 'our-fin') {
      // In repair mode the FIN is queued as sent (acknowledged next); live, it leaves now.
      if (repair) s.selectQueue(QUEUE.SEND);
      s.shutdownWrite();
      if (repair) s.selectQueue(QUEUE.NONE);
      // Its sequence number is taken: the peer's segments acknowledge it from now on.
      if (repair) p.peer.ack = (p.peer.ack + 1) >>> 0;
    } else {
      sendForgedSegment({ ...p.peer, flags: step === 'peer-fin' ? TH.FIN | TH.ACK : TH.ACK }, REPAIR_MARK, p.raw);
      if (step === 'peer-fin') p.peer.seq = (p.peer.seq + 1) >>> 0;
    }
    const got = s.info().state;
    // Live, the peer may move it on at once (acknowledging our FIN): only repair mode is checked.
    if (repair && got !== want) {
      throw new Error(`${s.what}: putting back ${STEP_NAMES[step]} left the connection in state ${STATE_NAMES[got] ?? got}, not ${STATE_NAMES[want]}`);
    }
  }
}

/**
 * Make the connection of `e` (an inet_sk_entry) and `stream` (its tcp-stream image) as a socket
 * of stasis's own, in repair mode; bound and connected.
 */
export function restoreTcpStream(e: Record<string, any>, stream: { message: Record<string, any>; extra?: Uint8Array },
  what: string, addrBytes: (w: readonly number[]) => Buffer): PendingStream {
  const family = Number(e.family);
  const s = RepairSocket.open(family, Number(e.type), Number(e.proto), what);
  let raw: number | undefined;
  try {
    s.repairOn();
    s.reuse = e.opts?.reuseaddr ? 1 : 0; // what leaving repair mode puts back
    const m = stream.message;
    const state = Number(e.state);
    const inqLen = Number(m.inq_len);
    const outqLen = Number(m.outq_len);
    const unsentLen = Number(m.unsq_len ?? 0);
    const queues = Buffer.from(stream.extra ?? new Uint8Array());
    if (queues.length !== inqLen + outqLen) throw new Error(`${what}: its tcp-stream image holds ${queues.length} bytes of queues, not ${inqLen + outqLen}`);
    // The queues take memory: as much as the socket had (the sizes grow by themselves as a
    // connection goes; a new socket starts small), with room for the per-packet overhead.
    s.bufferSizes(Math.max(Number(e.opts?.so_sndbuf ?? 0), 2 * outqLen), Math.max(Number(e.opts?.so_rcvbuf ?? 0), 2 * inqLen));
    const src = addrBytes(e.src_addr ?? []);
    const dst = addrBytes(e.dst_addr ?? []);
    const bindTo = sockaddrInet(family, src, Number(e.src_port));
    s.bind(bindTo);
    // Established one short of each FIN (they are put back below, or once live).
    const sndUna = (Number(m.outq_seq) - outqLen - (OUR_FIN.has(state) ? 1 : 0)) >>> 0;
    const rcvNxt = (Number(m.inq_seq) - (PEER_FIN.has(state) ? 1 : 0)) >>> 0;
    s.selectQueue(QUEUE.SEND);
    s.setQueueSeq(sndUna);
    s.selectQueue(QUEUE.RECV);
    s.setQueueSeq(rcvNxt - inqLen);
    s.selectQueue(QUEUE.NONE);
    const to = sockaddrInet(family, dst, Number(e.dst_port));
    s.connect(to);
    const optMask = Number(m.opt_mask ?? 0);
    const sndWscale = optMask & TCPI_OPT.WSCALE ? Number(m.snd_wscale ?? 0) : 0;
    s.setOptions({ mss: Number(m.mss_clamp), optMask, sndWscale: Number(m.snd_wscale ?? 0), rcvWscale: Number(m.rcv_wscale ?? 0) });
    if (optMask & TCPI_OPT.TIMESTAMPS && m.timestamp !== undefined) s.setTimestamp(Number(m.timestamp));
    s.selectQueue(QUEUE.RECV);
    if (inqLen) s.fillQueue(queues.subarray(0, inqLen), 'recv');
    s.selectQueue(QUEUE.SEND);
    const sentLen = outqLen - unsentLen;
    if (sentLen > 0) s.fillQueue(queues.subarray(inqLen, inqLen + sentLen));
    s.selectQueue(QUEUE.NONE);
    if (m.rcv_wnd !== undefined) {
      // The window was last advertised at rcv_wup, which may count the peer's FIN: from here on
      // (one short of it) the same right edge.
      const rcvWup = Number(m.rcv_wup) >>> 0;
      const past = ((rcvWup - rcvNxt) | 0) > 0 ? (rcvWup - rcvNxt) >>> 0 : 0;
      s.setWindow({
        snd_wl1: Number(m.snd_wl1), snd_wnd: Number(m.snd_wnd), max_window: Number(m.max_window),
        rcv_wnd: Number(m.rcv_wnd) + past, rcv_wup: (rcvWup - past) >>> 0,
      });
    }
    const steps = finSteps(state);
    const p: PendingStream = {
      socket: s, unsent: Buffer.from(queues.subarray(inqLen + Math.max(0, sentLen))), live: steps.live,
      // The peer's segments: from its address to ours, at its next sequence number, acknowledging
      // what it had, advertising the window it had (in its own scale).
      peer: {
        family, src: dst, sport: Number(e.dst_port), dst: src, dport: Number(e.src_port), seq: rcvNxt, ack: sndUna,
        window: m.snd_wnd !== undefined ? Number(m.snd_wnd) >>> sndWscale : 0xffff,
      },
    };
    takeSteps(p, steps.repair, true);
    // A peer's FIN forged once live is sent from here: the raw socket is made now, in the
    // connection's network namespace.
    if (steps.live.includes('peer-fin')) raw = p.raw = rawPacketSocket(segmentPacket({ ...p.peer, flags: 0 }).family, REPAIR_MARK);
    return p;
  } catch (err) {
    fs.closeSync(s.fd);
    if (raw !== undefined) fs.closeSync(raw);
    throw err;
  }
}

/** The tree is ready: each connection goes live and sends what it had not sent yet. */
export function goLive(pending: readonly PendingStream[]): void {
  for (const p of pending) {
    p.socket.repairOff();
    if (p.unsent.length) p.socket.send(p.unsent);
    takeSteps(p, p.live, false);
  }
}

/** Stasis's copies go (live connections stay with their tasks; ones in repair mode close silently). */
export function closeStreams(pending: readonly PendingStream[]): void {
  for (const p of pending) {
    fs.closeSync(p.socket.fd);
    if (p.raw !== undefined) fs.closeSync(p.raw);
  }
}
