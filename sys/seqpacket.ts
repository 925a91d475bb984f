// AF_UNIX SOCK_SEQPACKET records, as criu's swrk protocol uses them: one message per record (no
// framing of our own), descriptors passed in SCM_RIGHTS, and the peer's credentials. libuv has no
// SEQPACKET support, so these are plain blocking system calls on the main thread.

import { SYS } from './arch.js';
import { SysError } from './errno.js';
import { addressOf, nativeBuffer, rawSyscall, syscall } from './native.js';
import { AF, MSG, SCM, SOCK, SOL_SOCKET, msghdrBlock, msghdrResult, parseCmsgs } from './socket.js';
import { F_GETFL, F_SETFL, O_NONBLOCK } from './fcntl.js';

const SO_PEERCRED = 17;
const MSG_CMSG_CLOEXEC = 0x40000000;
const EINTR = 4;
const CMSG_HEADER = 16;

const align8 = (n: number) => Math.ceil(n / 8) * 8;

/** A syscall retried while a signal (SIGCHLD of a restored child, say) interrupts it. */
function retrying(what: string, call: () => bigint): bigint {
  for (;;) {
    const r = call();
    if (r === -BigInt(EINTR)) continue;
    if (r < 0n) throw new SysError(Number(-r), what);
    return r;
  }
}

/** socketpair(AF_UNIX, SOCK_SEQPACKET | flags): the two ends. */
export function seqpacketPair(flags: number = SOCK.CLOEXEC): [number, number] {
  const fds = nativeBuffer(8);
  syscall('socketpair(AF_UNIX, SOCK_SEQPACKET)', SYS.socketpair, AF.UNIX, SOCK.SEQPACKET | flags, 0, addressOf(fds));
  return [fds.readInt32LE(0), fds.readInt32LE(4)];
}

/** SO_PEERCRED: who created (or connected) the other end. */
export function peerCred(fd: number): { pid: number; uid: number; gid: number } {
  const cred = nativeBuffer(12);
  const len = nativeBuffer(4);
  len.writeUInt32LE(cred.length);
  syscall(`getsockopt(${fd}, SO_PEERCRED)`, SYS.getsockopt, fd, SOL_SOCKET, SO_PEERCRED, addressOf(cred), addressOf(len));
  return { pid: cred.readInt32LE(0), uid: cred.readUInt32LE(4), gid: cred.readUInt32LE(8) };
}

/**
 * Set or clear O_NONBLOCK (a descriptor we were handed may share its file description with a
 * client that made it non-blocking; a test polls its end instead of blocking its event loop).
 */
export function setBlocking(fd: number, blocking: boolean): void {
  const flags = Number(syscall(`fcntl(${fd}, F_GETFL)`, SYS.fcntl, fd, F_GETFL));
  const want = blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK;
  if (want !== flags) syscall(`fcntl(${fd}, F_SETFL)`, SYS.fcntl, fd, F_SETFL, want);
}

export interface SeqRecord {
  data: Buffer;
  /** Descriptors that came with the record (SCM_RIGHTS), now ours, close-on-exec. */
  fds: number[];
}

/**
 * The next record, waiting for it (EAGAIN on a non-blocking descriptor); undefined when the peer has closed its end (a read of 0
 * bytes: SEQPACKET has no empty records worth telling apart from EOF here).
 */
export function recvRecord(fd: number, maxFds = 4): SeqRecord | undefined {
  // The record's size first (MSG_TRUNC reports the real length of a peeked record).
  const size = Number(retrying(`recv(${fd}, MSG_PEEK)`,
    () => rawSyscall(SYS.recvfrom, fd, 0, 0, MSG.PEEK | MSG.TRUNC, 0, 0)));
  if (size === 0) {
    // Closed, or an empty record: consume it so it is not seen twice.
    retrying(`recv(${fd})`, () => rawSyscall(SYS.recvfrom, fd, 0, 0, 0, 0, 0));
    return undefined;
  }
  const controlLen = align8(CMSG_HEADER + 4 * maxFds);
  const probe = msghdrBlock(0n, { dataLen: size, controlLen });
  const buf = nativeBuffer(probe.size);
  const block = msghdrBlock(addressOf(buf), { dataLen: size, controlLen });
  block.bytes.copy(buf, 0);
  const n = Number(retrying(`recvmsg(${fd})`, () => rawSyscall(SYS.recvmsg, fd, addressOf(buf), MSG_CMSG_CLOEXEC)));
  const { controlLen: got, flags } = msghdrResult(buf);
  const fds: number[] = [];
  for (const c of parseCmsgs(buf.subarray(block.controlOffset, block.controlOffset + got))) {
    if (c.level !== SOL_SOCKET || c.type !== SCM.RIGHTS) continue;
    for (let i = 0; i + 4 <= c.data.length; i += 4) fds.push(c.data.readInt32LE(i));
  }
  if (flags & MSG.CTRUNC) {
    for (const f of fds) rawSyscall(SYS.close, f);
    throw new Error(`recvmsg(${fd}): more than ${maxFds} descriptors came with a record`);
  }
  return { data: Buffer.from(buf.subarray(block.dataOffset, block.dataOffset + n)), fds };
}

/** Send one record (with `fds` in SCM_RIGHTS). A closed peer is EPIPE, never SIGPIPE. */
export function sendRecord(fd: number, data: Uint8Array, fds: readonly number[] = []): void {
  const controlLen = fds.length ? align8(CMSG_HEADER + 4 * fds.length) : 0;
  const probe = msghdrBlock(0n, { dataLen: data.length, controlLen });
  const buf = nativeBuffer(probe.size);
  const block = msghdrBlock(addressOf(buf), { dataLen: data.length, controlLen });
  block.bytes.copy(buf, 0);
  Buffer.from(data.buffer, data.byteOffset, data.length).copy(buf, block.dataOffset);
  if (fds.length) {
    buf.writeBigUInt64LE(BigInt(CMSG_HEADER + 4 * fds.length), block.controlOffset); // cmsg_len
    buf.writeInt32LE(SOL_SOCKET, block.controlOffset + 8);
    buf.writeInt32LE(SCM.RIGHTS, block.controlOffset + 12);
    fds.forEach((f, i) => buf.writeInt32LE(f, block.controlOffset + CMSG_HEADER + 4 * i));
  }
  const n = Number(retrying(`sendmsg(${fd})`, () => rawSyscall(SYS.sendmsg, fd, addressOf(buf), MSG.NOSIGNAL)));
  if (n !== data.length) throw new Error(`sendmsg(${fd}): sent ${n} of ${data.length} bytes`);
}
