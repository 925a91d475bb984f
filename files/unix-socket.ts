// Unix sockets (CRIU's sk-unix.c): stream, datagram and seqpacket; unbound, bound to a path or an
// abstract name, listening, or connected to a peer that is also in the dump (held by this process
// or another of the tree: socketpair() then fork(), a server's forked handler). sock_diag tells the
// peer (by inode), the bound name and the listener's backlog; the queued data is read without
// consuming it (MSG_PEEK, walking datagrams with SO_PEEK_OFF) into sk-queues.img.
//
// Restore: both ends of a connection in the dump come from one socketpair(); the end opened first
// hands the other to its description (provide), which a later process of the tree then takes from
// this one (a spare descriptor, see fdtable.ts). A stream socket whose peer was closed is a
// socketpair whose other end is closed again once it has queued the data. Queued data is sent
// again from the peer end (a bound datagram socket's, from a throwaway socket by name); a datagram
// socket connected to a bound one connects once every socket exists (finish).

import fs from 'node:fs';
import path from 'node:path';
import { SYS } from '../sys/arch.js';
import { errnoName, isErrorResult } from '../sys/errno.js';
import type { TaskCalls } from '../sys/inject.js';
import { cString } from '../sys/native.js';
import { unixDiag, type UnixDiag } from '../sys/netlink.js';
import {
  AF, MSG, SCM, SHUT, SO, SOCK, SOL_SOCKET, TCP_STATE, msghdrBlock, msghdrResult, parseCmsgs,
  sockaddrUn, sockProtoName,
} from '../sys/socket.js';
import type { DumpedFile, DumpFilesContext, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { zeroFown } from './reg.js';
import {
  dumpSkOpts, getsockoptInt, restoreSkOpts, setsockopt, sockAddrCall, socketInode, socketIn,
  socketpairIn,
} from './sockets.js';
import { F_SETFL, O_CLOEXEC, O_DIRECTORY, O_NONBLOCK, O_PATH } from '../sys/fcntl.js';

export const FD_TYPE_UNIXSK = 5;
const SK_QUEUES = 'sk-queues.img';
const AT_FDCWD = -100;
const EAGAIN = 11;
/** The most one datagram can hold (a sender's sndbuf is capped well below this). */
const PEEK_MAX = 4 << 20;
const CONTROL_LEN = 512;

function describe(ino: number, pid: number, fd: number): string {
  return `unix socket:[${ino}] (fd ${fd} of task ${pid})`;
}

/** The printable form of a bound name: a path, or @name for an abstract one. */
function printable(name: Uint8Array): string {
  const b = Buffer.from(name);
  return b[0] === 0 ? `@${b.subarray(1).toString('latin1')}` : cString(b);
}

/** unix_sk_entry.uflags: the socket is outside the dump (a peer named only to be connected to). */
const USK_EXTERN = 1;

/**
 * A peer is in the dump when some process of the tree holds it, which is known once every process
 * is dumped: each dumped unix socket is recorded here, and the peers are checked at the end. With
 * --ext-unix-sk a datagram socket may be connected to a socket bound outside the tree: that peer
 * is recorded by its name, as external, and the restored socket connects to the name again.
 */
function requirePeerInDump(ctx: DumpFilesContext, f: OpenFd, d: UnixDiag, what: string): void {
  const key = 'unix-socket:dumped';
  let dumped = ctx.memo.get(key) as Set<number> | undefined;
  if (!dumped) ctx.memo.set(key, (dumped = new Set()));
  dumped.add(d.ino);
  const peer = d.peer;
  if (!peer) return;
  ctx.atEnd(() => {
    if (dumped.has(peer)) return;
    const outside = `${what} is connected to socket:[${peer}], which is outside the dumped process`;
    if (d.type !== SOCK.DGRAM) {
      throw new Error(`${outside}: stasis cannot dump a connection that leaves the tree (only a datagram socket connected to a bound one, with --ext-unix-sk)`);
    }
    if (!ctx.extUnixSk) throw new Error(`${outside}: dump with --ext-unix-sk (criu's ext_unix_sk) to connect it to the same name on restore`);
    dumped.add(peer);
    const p = unixDiag(peer) ?? unixDiag(peer, f.pid);
    const name = p?.name;
    if (!p || !name?.length || (name[0] !== 0 && !cString(name).startsWith('/'))) {
      throw new Error(`${outside}, which has no absolute or abstract name to connect to again`);
    }
    ctx.addFile({
      type: FD_TYPE_UNIXSK, field: 'usk',
      entry: {
        ino: peer, type: p.type, state: p.state, flags: 0, uflags: USK_EXTERN, backlog: 0, peer: 0,
        fown: zeroFown(), opts: EXTERNAL_SK_OPTS, name,
      },
    });
  });
}

/** The options of an external socket are not its holder's to know: recorded as zero. */
const EXTERNAL_SK_OPTS = {
  so_sndbuf: 0, so_rcvbuf: 0, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n,
};

/** The bound path's place on disk: name_dir for a relative name, file_perms, deleted. */
function dumpBoundPath(f: OpenFd, d: UnixDiag, name: Buffer, what: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const text = cString(name);
  let full = text;
  if (!text.startsWith('/')) {
    const cwd = fs.readlinkSync(`/proc/${f.pid}/cwd`);
    full = path.join(cwd, text);
    out.name_dir = cwd;
  }
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(full);
  } catch {
    st = undefined;
  }
  if (st && d.vfs && st.ino === d.vfs.ino) {
    out.file_perms = { mode: st.mode, uid: st.uid, gid: st.gid };
  } else if (out.name_dir !== undefined) {
    throw new Error(`${what} is bound to the relative name ${text}, which is not in the task's cwd any more; stasis cannot dump that yet`);
  } else {
    out.deleted = true;
  }
  return out;
}

/**
 * The socket's receive queue, one buffer per packet (datagram/seqpacket) or chunk (stream), read
 * with MSG_PEEK from inside the task. SO_PEEK_OFF moves past what was peeked, so each call sees the
 * next packet; the task's own peek offset is put back afterwards.
 */
function peekQueue(inj: TaskCalls, fd: number, d: UnixDiag, what: string): Buffer[] {
  const stream = d.type === SOCK.STREAM;
  const saved = getsockoptInt(inj, fd, SOL_SOCKET, SO.PEEK_OFF);
  setsockopt(inj, fd, SOL_SOCKET, SO.PEEK_OFF, 0);
  const packets: Buffer[] = [];
  try {
    const size = msghdrBlock(0n, { dataLen: PEEK_MAX, controlLen: CONTROL_LEN }).size;
    const base = inj.scratch(size);
    const block = msghdrBlock(base, { dataLen: PEEK_MAX, controlLen: CONTROL_LEN });
    for (;;) {
      inj.writeScratch(block.bytes, 0);
      const r = inj.call(SYS.recvmsg, fd, base, MSG.PEEK | MSG.DONTWAIT | (stream ? 0 : MSG.TRUNC));
      if (r === BigInt(-EAGAIN)) break;
      if (isErrorResult(r)) throw new Error(`${what}: peeking at its queue failed with ${errnoName(Number(-r))}`);
      const n = Number(r);
      // End of data: a shut-down socket reads 0 instead of EAGAIN.
      if (n === 0 && (stream || d.shutdown & 1)) break;
      const { controlLen } = msghdrResult(inj.readScratch(block.controlOffset, 0));
      if (controlLen) {
        for (const c of parseCmsgs(inj.readScratch(controlLen, block.controlOffset))) {
          if (c.level !== SOL_SOCKET || c.type !== SCM.RIGHTS) continue; // credentials are the sender's anyway
          for (let i = 0; i + 4 <= c.data.length; i += 4) inj.call(SYS.close, c.data.readInt32LE(i));
          throw new Error(`${what} has descriptors queued in it (SCM_RIGHTS), which stasis cannot dump yet`);
        }
      }
      if (n > PEEK_MAX) throw new Error(`${what} holds a datagram of ${n} bytes, more than stasis reads (${PEEK_MAX})`);
      packets.push(inj.readScratch(n, block.dataOffset));
      if (packets.length > 1_000_000) throw new Error(`${what}: its queue does not end`);
    }
  } finally {
    setsockopt(inj, fd, SOL_SOCKET, SO.PEEK_OFF, saved);
  }
  return packets;
}

// --- restore ---------------------------------------------------------------------------------

type Usk = Record<string, any>;

/** The unix sockets of the dump by inode (files.img holds every description). */
function unixSockets(task: RestoreFilesTask): Map<number, Usk> {
  const out = new Map<number, Usk>();
  for (const { message } of task.imageEntries('files.img')) {
    if (message.usk) out.set(Number(message.usk.ino), message.usk);
  }
  return out;
}

function queueOf(task: RestoreFilesTask, id: number): Uint8Array[] {
  return task.imageEntries(SK_QUEUES).filter((q) => Number(q.message.id_for) === id).map((q) => q.extra ?? new Uint8Array());
}

/** Send packets from `fd` (to its peer, or to `to`), keeping their boundaries. */
function sendPackets(inj: TaskCalls, fd: number, packets: Uint8Array[], what: string, to?: { addr: Buffer; len: number }): void {
  for (const p of packets) {
    const dataAt = inj.writeScratch(Buffer.from(p), 256); // first: a larger scratch moves it
    const toAt = to ? inj.writeScratch(to.addr, 0) : 0n;
    const r = inj.call(SYS.sendto, fd, dataAt, p.length, MSG.DONTWAIT | MSG.NOSIGNAL, toAt, to ? to.len : 0);
    if (isErrorResult(r)) throw new Error(`${what}: sending its queued data again failed with ${errnoName(Number(-r))}`);
    if (Number(r) !== p.length) throw new Error(`${what}: only ${r} of ${p.length} queued bytes could be sent again`);
  }
}

/** Run `fn` with the task's cwd at `dir` (a relative name is bound where it was), then go back. */
function inDir<T>(inj: TaskCalls, dir: string | undefined, fn: () => T): T {
  if (!dir) return fn();
  const at = inj.writeScratch(Buffer.from(`.\0`), 0);
  const here = Number(inj.callChecked(SYS.openat, AT_FDCWD, at, O_PATH | O_DIRECTORY | O_CLOEXEC));
  try {
    inj.callChecked(SYS.chdir, inj.writeScratch(Buffer.from(`${dir}\0`), 0));
    return fn();
  } finally {
    inj.call(SYS.fchdir, here);
    inj.call(SYS.close, here);
  }
}

/** Bind `fd` to the entry's name, as the dumped socket was (its file's mode and owner too). */
function bindName(task: RestoreFilesTask, fd: number, e: Usk): void {
  const name = Buffer.from(e.name ?? []);
  // An accepted socket shows its listener's name; like criu, a connected stream socket stays unbound.
  if (!name.length || (Number(e.type) === SOCK.STREAM && Number(e.state) === TCP_STATE.ESTABLISHED)) return;
  const what = `unix socket:[${e.ino}] in task ${task.pid}`;
  const abstract = name[0] === 0;
  const full = abstract ? '' : path.resolve(e.name_dir ?? '/', cString(name));
  if (!abstract) {
    // The dumped process's socket file outlives it; a new bind() needs the name free.
    const st = fs.lstatSync(full, { throwIfNoEntry: false });
    if (st?.isSocket()) fs.unlinkSync(full);
    else if (st) throw new Error(`${what}: cannot bind to ${full}: a file that is no socket is there`);
  }
  const r = inDir(task.inj, e.name_dir, () => sockAddrCall(task.inj, SYS.bind, fd, sockaddrUn(name)));
  if (isErrorResult(r)) {
    const code = errnoName(Number(-r));
    const hint = code === 'EADDRINUSE' ? ' (is the dumped process still running?)' : '';
    throw new Error(`${what}: bind to ${printable(name)} failed with ${code}${hint}`);
  }
  if (abstract) return;
  if (e.deleted) {
    fs.unlinkSync(full);
  } else if (e.file_perms) {
    fs.chmodSync(full, Number(e.file_perms.mode) & 0o7777);
    fs.chownSync(full, Number(e.file_perms.uid), Number(e.file_perms.gid));
  }
}

/** What a socket gets once it exists and holds its data: shutdown, options, file flags. */
function settle(inj: TaskCalls, fd: number, e: Usk): void {
  const shut = Number(e.shutdown ?? 0);
  if (shut) inj.callChecked(SYS.shutdown, fd, shut === 3 ? SHUT.RDWR : shut === 1 ? SHUT.RD : SHUT.WR);
  restoreSkOpts(inj, fd, e.opts ?? {});
  if (Number(e.flags) & O_NONBLOCK) inj.callChecked(SYS.fcntl, fd, F_SETFL, O_NONBLOCK);
}

export const unixSocketFile: FileKind = {
  type: FD_TYPE_UNIXSK,
  field: 'usk',
  claims: ({ pid, fd, link }) => link.startsWith('socket:[') && (sockProtoName(pid, fd)?.startsWith('UNIX') ?? false),
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
    const ino = socketInode(f.link);
    const what = describe(ino, f.pid, f.fd);
    // Asked in stasis's network namespace first, then in the task's own (a container's).
    const d = unixDiag(ino) ?? unixDiag(ino, f.pid);
    if (!d) throw new Error(`${what} is not visible to sock_diag; stasis cannot dump it`);
    if (d.icons.length) {
      throw new Error(`${what} is listening with ${d.icons.length} connection(s) not yet accepted, which stasis cannot dump yet`);
    }
    requirePeerInDump(ctx, f, d, what);
    const name = d.name ?? Buffer.alloc(0);
    const entry: Record<string, unknown> = {
      ino, type: d.type, state: d.state, flags: f.fdinfo.flags & ~O_CLOEXEC, uflags: 0,
      backlog: d.wqueue, peer: d.peer, fown: zeroFown(), opts: dumpSkOpts(ctx.inj, f.fd, what), name,
    };
    if (d.shutdown) entry.shutdown = d.shutdown;
    if (name.length && name[0] !== 0) Object.assign(entry, dumpBoundPath(f, d, name, what));
    const packets = d.state === TCP_STATE.LISTEN ? [] : peekQueue(ctx.inj, f.fd, d, what);
    return {
      type: FD_TYPE_UNIXSK, field: 'usk', entry,
      added(id) {
        for (const p of packets) ctx.addImageEntry(SK_QUEUES, { id_for: id, length: p.length }, p);
      },
    };
  },
  inheritKey: (e) => `socket:[${Number(e.ino)}]`,
  open(e: Usk, task: RestoreFilesTask): number {
    const inj = task.inj;
    const type = Number(e.type);
    const what = `unix socket:[${e.ino}] in task ${task.pid}`;
    const sockets = unixSockets(task);
    const peer = e.peer ? sockets.get(Number(e.peer)) : undefined;
    if (e.peer && !peer) throw new Error(`${what} is connected to socket:[${e.peer}], which the dump does not have`);
    const queue = queueOf(task, Number(e.id));

    if (peer && Number(peer.peer) === Number(e.ino)) {
      // Both ends are here: one socketpair, each end sending the other's queue.
      const [a, b] = socketpairIn(inj, AF.UNIX, type);
      sendPackets(inj, b, queue, what);
      sendPackets(inj, a, queueOf(task, Number(peer.id)), `unix socket:[${peer.ino}] in task ${task.pid}`);
      bindName(task, a, e);
      bindName(task, b, peer);
      settle(inj, a, e);
      settle(inj, b, peer);
      task.provide(Number(peer.id), b);
      return a;
    }
    const connected = Number(e.state) === TCP_STATE.ESTABLISHED;
    const peerGone = !peer && (type === SOCK.DGRAM ? !e.name?.length && queue.length > 0 : connected);
    if (peerGone) {
      // The peer was closed (its data may still be queued here): a pair whose other end goes
      // away again, leaving this one shut down as the kernel left it.
      const [a, b] = socketpairIn(inj, AF.UNIX, type);
      sendPackets(inj, b, queue, what);
      inj.callChecked(SYS.close, b);
      bindName(task, a, e);
      settle(inj, a, e);
      return a;
    }
    const fd = socketIn(inj, AF.UNIX, type);
    bindName(task, fd, e);
    if (Number(e.state) === TCP_STATE.LISTEN) inj.callChecked(SYS.listen, fd, Number(e.backlog));
    if (queue.length) {
      if (type !== SOCK.DGRAM || !e.name?.length) throw new Error(`${what} has queued data but nobody to send it from`);
      // A bound datagram socket receives its queue from a throwaway socket, by name.
      const tmp = socketIn(inj, AF.UNIX, SOCK.DGRAM);
      try {
        inDir(inj, e.name_dir, () => sendPackets(inj, tmp, queue, what, sockaddrUn(Buffer.from(e.name))));
      } finally {
        inj.call(SYS.close, tmp);
      }
    }
    settle(inj, fd, e);
    return fd;
  },
  finish(e: Usk, fd: number, task: RestoreFilesTask): void {
    connectToPeer(e, fd, task, false);
  },
};

/** A datagram socket connected to a bound one: connect by name (deferred once if not bound yet). */
function connectToPeer(e: Usk, fd: number, task: RestoreFilesTask, deferred: boolean): void {
  if (!e.peer) return;
  const peer = unixSockets(task).get(Number(e.peer))!;
  if (Number(peer.peer) === Number(e.ino)) return; // a pair, made whole in open()
  // A datagram socket connected to a bound one: connect by name, now that it is bound.
  const name = Buffer.from(peer.name ?? []);
  const what = `unix socket:[${e.ino}] in task ${task.pid}`;
  if (!name.length) throw new Error(`${what} is connected to the unbound socket:[${peer.ino}], which stasis cannot restore yet`);
  const r = inDir(task.inj, peer.name_dir, () => sockAddrCall(task.inj, SYS.connect, fd, sockaddrUn(name)));
  if (isErrorResult(r)) {
    const code = errnoName(Number(-r));
    // The bound socket may be held only by a process of the tree restored after this one:
    // connect once every process has its sockets.
    if (!deferred && (code === 'ECONNREFUSED' || code === 'ENOENT')) {
      task.later(() => connectToPeer(e, fd, task, true));
      return;
    }
    throw new Error(`${what}: connect to ${printable(name)} failed with ${code}`);
  }
}
