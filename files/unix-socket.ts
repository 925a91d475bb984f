// Unix sockets (CRIU's sk-unix.c): stream, datagram and seqpacket; unbound, bound to a path or an
// abstract name, listening, or connected to a peer that is also in the dump (held by this process
// or another of the tree: socketpair() then fork(), a server's forked handler). sock_diag tells the
// peer (by inode), the bound name and the listener's backlog; the queued data is read without
// consuming it (MSG_PEEK, walking datagrams with SO_PEEK_OFF) into sk-queues.img. Descriptors in
// flight (SCM_RIGHTS) come out of the peek installed in the task: each is dumped as a file of the
// dump, its id kept with the packet (sk_packet_entry.scm), and closed again. A connection still
// waiting in a listener's accept queue is recorded as CRIU does: its client's peer is the listener.
//
// Restore: both ends of a connection in the dump come from one socketpair(); the end opened first
// hands the other to its description (provide), which a later process of the tree then takes from
// this one (a spare descriptor, see fdtable.ts). A stream socket whose peer was closed is a
// socketpair whose other end is closed again once it has queued the data. Queued data is sent
// again from the peer end (a bound datagram socket's, from a throwaway socket by name), with the
// files in flight opened and attached; a datagram socket connected to a bound one, and a client
// whose connection was not accepted yet, connect once every socket exists (finish). Paths are
// those of the task's own mount namespace (/proc/PID/root). A socket whose file was removed is
// bound (in directories made for it if they are gone too), its file renamed to a ghost name its
// clients connect through, and the ghost and those directories removed once all are connected.

import fs from 'node:fs';
import path from 'node:path';
import { SYS } from '../sys/arch.js';
import { errnoName, isErrorResult } from '../sys/errno.js';
import type { TaskCalls } from '../sys/inject.js';
import { cString } from '../sys/native.js';
import { unixDiag, unixListenerOf, type UnixDiag } from '../sys/netlink.js';
import {
  AF, MSG, SCM, SHUT, SO, SOCK, SOL_SOCKET, TCP_STATE, msghdrBlock, msghdrResult, parseCmsgs,
  sockaddrUn, sockProtoName,
} from '../sys/socket.js';
import type { DumpedFile, DumpFilesContext, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { zeroFown } from './reg.js';
import type { IdsInside } from '../task/userns.js';
import {
  dumpSkOpts, getsockoptInt, restoreSkOpts, setsockopt, sockAddrCall, socketInode, socketIn,
  socketpairIn,
} from './sockets.js';
import { F_SETFL, O_CLOEXEC, O_DIRECTORY, O_NONBLOCK, O_PATH } from '../sys/fcntl.js';

export const FD_TYPE_UNIXSK = 5;
const SK_QUEUES = 'sk-queues.img';
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const EAGAIN = 11;
/** The most one datagram can hold (a sender's sndbuf is capped well below this). */
const PEEK_MAX = 4 << 20;
/** Room for a packet's control messages: SCM_RIGHTS of up to 253 (SCM_MAX_FD) descriptors, credentials. */
const CONTROL_LEN = 4096;

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
  const dumped = memoOf(ctx, 'unix-socket:dumped', () => new Set<number>());
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

/** A kind's per-dump state under `key`, made on first use. */
function memoOf<T>(ctx: DumpFilesContext, key: string, make: () => T): T {
  let v = ctx.memo.get(key) as T | undefined;
  if (v === undefined) ctx.memo.set(key, (v = make()));
  return v;
}

/**
 * A connected stream socket with no peer to show may be a client whose connection waits in a
 * listener's accept queue (the server end exists only there, with no inode; the listener lists
 * its waiting clients). It is recorded as connected to the listener, as CRIU records it, and
 * connects to it again on restore. Its server end has no descriptor to peek through: bytes the
 * client has sent into it cannot be dumped.
 */
function pendingPeer(f: OpenFd, d: UnixDiag, what: string): number {
  if (d.peer || d.type === SOCK.DGRAM || d.state !== TCP_STATE.ESTABLISHED) return d.peer;
  const listener = unixListenerOf(d.ino) ?? unixListenerOf(d.ino, f.pid);
  if (listener === undefined) return 0;
  if (d.wqueue) throw new Error(`${what} has sent ${d.wqueue} bytes on a connection that socket:[${listener}] has not accepted yet, which stasis cannot dump`);
  return listener;
}

/** The options of an external socket are not its holder's to know: recorded as zero. */
const EXTERNAL_SK_OPTS = {
  so_sndbuf: 0, so_rcvbuf: 0, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n,
};

/**
 * The bound path's place on disk: name_dir for a relative name, file_perms, deleted. The path is
 * the task's: looked up from its root, in its mount namespace. The file's owner as `ids` (a
 * container's user namespace) sees it, as CRIU writes it.
 */
function dumpBoundPath(f: OpenFd, d: UnixDiag, name: Buffer, what: string, ids?: IdsInside): Record<string, unknown> {
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
    st = fs.statSync(inTaskRoot(f.pid, full));
  } catch {
    st = undefined;
  }
  if (st && d.vfs && st.ino === d.vfs.ino) {
    out.file_perms = { mode: st.mode, uid: ids ? ids.uid(st.uid) : st.uid, gid: ids ? ids.gid(st.gid) : st.gid };
  } else if (out.name_dir !== undefined) {
    throw new Error(`${what} is bound to the relative name ${text}, which is not in the task's cwd any more; stasis cannot dump that yet`);
  } else {
    out.deleted = true;
  }
  return out;
}

/** `p`, a path as task `pid` sees it, as stasis reaches it: from the task's root, in its mount namespace. */
function inTaskRoot(pid: number, p: string): string {
  return `/proc/${pid}/root${p}`;
}

/** A queued packet: its bytes, and the ids of the files in flight with it (SCM_RIGHTS), if any. */
interface Packet { data: Buffer; rights?: number[] }

/**
 * Whether the socket has a receive queue to read: a stream or seqpacket socket only once
 * connected (before, reading it fails with EINVAL or ENOTCONN), a datagram socket always.
 */
function hasQueue(d: UnixDiag): boolean {
  return d.type === SOCK.DGRAM || d.state === TCP_STATE.ESTABLISHED;
}

/**
 * The socket's receive queue, one buffer per packet (datagram/seqpacket) or chunk (stream), read
 * with MSG_PEEK from inside the task. SO_PEEK_OFF moves past what was peeked, so each call sees the
 * next packet; the task's own peek offset is put back afterwards. Descriptors in flight are
 * installed in the task by the peek: each is dumped as a file (ctx.dumpFd) and closed again.
 */
function peekQueue(ctx: DumpFilesContext, fd: number, d: UnixDiag, what: string): Packet[] {
  const inj = ctx.inj;
  const stream = d.type === SOCK.STREAM;
  const saved = getsockoptInt(inj, fd, SOL_SOCKET, SO.PEEK_OFF);
  setsockopt(inj, fd, SOL_SOCKET, SO.PEEK_OFF, 0);
  const packets: Packet[] = [];
  try {
    const size = msghdrBlock(0n, { dataLen: PEEK_MAX, controlLen: CONTROL_LEN }).size;
    for (;;) {
      // Placed again each time: dumping a file in flight may have used the scratch for itself.
      const base = inj.scratch(size);
      const block = msghdrBlock(base, { dataLen: PEEK_MAX, controlLen: CONTROL_LEN });
      inj.writeScratch(block.bytes, 0);
      const r = inj.call(SYS.recvmsg, fd, base, MSG.PEEK | MSG.DONTWAIT | (stream ? 0 : MSG.TRUNC));
      if (r === BigInt(-EAGAIN)) break;
      if (isErrorResult(r)) throw new Error(`${what}: peeking at its queue failed with ${errnoName(Number(-r))}`);
      const n = Number(r);
      // End of data: a shut-down socket reads 0 instead of EAGAIN.
      if (n === 0 && (stream || d.shutdown & 1)) break;
      const { controlLen, flags } = msghdrResult(inj.readScratch(block.controlOffset, 0));
      const inFlight: number[] = [];
      if (controlLen) {
        for (const c of parseCmsgs(inj.readScratch(controlLen, block.controlOffset))) {
          if (c.level !== SOL_SOCKET || c.type !== SCM.RIGHTS) continue; // credentials are the sender's anyway
          for (let i = 0; i + 4 <= c.data.length; i += 4) inFlight.push(c.data.readInt32LE(i));
        }
      }
      try {
        if (flags & MSG.CTRUNC) throw new Error(`${what} holds a packet with more control data than stasis reads (${CONTROL_LEN} bytes)`);
        if (n > PEEK_MAX) throw new Error(`${what} holds a datagram of ${n} bytes, more than stasis reads (${PEEK_MAX})`);
        const data = inj.readScratch(n, block.dataOffset);
        packets.push(inFlight.length ? { data, rights: inFlight.map((f) => ctx.dumpFd(f)) } : { data });
      } finally {
        for (const f of inFlight) inj.call(SYS.close, f);
      }
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

/** The packets queued for the socket of file `id`, with the ids of the files in flight with each. */
function queueOf(task: RestoreFilesTask, id: number): Packet[] {
  return task.imageEntries(SK_QUEUES).filter((q) => Number(q.message.id_for) === id).map((q) => {
    const data = Buffer.from(q.extra ?? []);
    const rights = ((q.message.scm ?? []) as { type: number; rights?: number[] }[])
      .filter((c) => Number(c.type) === SCM.RIGHTS).flatMap((c) => (c.rights ?? []).map(Number));
    return rights.length ? { data, rights } : { data };
  });
}

/**
 * The descriptor in the task of a file in flight: the task's own if it has the description
 * already, or else opened now and handed to the description (provide), so that an fd of the
 * task that shares it later gets this one; unused, it is closed with the other spares.
 */
function inFlightFd(task: RestoreFilesTask, id: number): number {
  const have = task.fdOf(id);
  if (have !== undefined) return have;
  task.provide(id, task.openFile(id));
  return task.fdOf(id)!;
}

/** A cmsghdr of SCM_RIGHTS carrying `fds` (CMSG_SPACE bytes). */
function rightsCmsg(fds: number[]): Buffer {
  const len = 16 + 4 * fds.length;
  const b = Buffer.alloc(Math.ceil(len / 8) * 8);
  b.writeBigUInt64LE(BigInt(len), 0);
  b.writeInt32LE(SOL_SOCKET, 8);
  b.writeInt32LE(SCM.RIGHTS, 12);
  fds.forEach((fd, i) => b.writeInt32LE(fd, 16 + 4 * i));
  return b;
}

/** Send packets from `fd` (to its peer, or to `to`), keeping their boundaries and the files in flight with them. */
function sendPackets(task: RestoreFilesTask, fd: number, packets: Packet[], what: string, to?: { addr: Buffer; len: number }): void {
  const inj = task.inj;
  for (const p of packets) {
    const control = p.rights ? rightsCmsg(p.rights.map((id) => inFlightFd(task, id))) : undefined;
    const shape = { dataLen: p.data.length, controlLen: control?.length ?? 0, name: to?.addr, nameLen: to?.len };
    const base = inj.scratch(msghdrBlock(0n, shape).size);
    const block = msghdrBlock(base, shape);
    inj.writeScratch(block.bytes, 0);
    if (control) inj.writeScratch(control, block.controlOffset);
    inj.writeScratch(p.data, block.dataOffset);
    const r = inj.call(SYS.sendmsg, fd, base, MSG.DONTWAIT | MSG.NOSIGNAL);
    if (isErrorResult(r)) throw new Error(`${what}: sending its queued data again failed with ${errnoName(Number(-r))}`);
    if (Number(r) !== p.data.length) throw new Error(`${what}: only ${r} of ${p.data.length} queued bytes could be sent again`);
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

/** The full path (as the task sees it) a socket was bound to; undefined for an abstract name. */
function boundPath(e: Usk): string | undefined {
  const name = Buffer.from(e.name ?? []);
  return name.length && name[0] !== 0 ? path.resolve(e.name_dir ?? '/', cString(name)) : undefined;
}

/**
 * Where a restored socket whose file was removed can be reached until every socket is connected:
 * its file renamed to `.stasis-ghost-INODE` beside the name (connected to from that directory,
 * so the name's length does not matter).
 */
function ghostOf(e: Usk): { dir: string; name: Buffer } {
  const full = boundPath(e)!;
  return { dir: path.dirname(full), name: Buffer.from(`.stasis-ghost-${Number(e.ino)}\0`) };
}

/** How to reach a bound socket by name: the directory to be in (if any) and the name from there. */
function reachable(e: Usk): { dir?: string; name: Buffer } {
  return e.deleted && boundPath(e) ? ghostOf(e) : { dir: e.name_dir, name: Buffer.from(e.name ?? []) };
}

/** Bind `fd` to the entry's name, as the dumped socket was (its file's mode and owner too). */
function bindName(task: RestoreFilesTask, fd: number, e: Usk): void {
  const name = Buffer.from(e.name ?? []);
  // An accepted socket shows its listener's name; like criu, a connected stream socket stays unbound.
  if (!name.length || (Number(e.type) === SOCK.STREAM && Number(e.state) === TCP_STATE.ESTABLISHED)) return;
  const full = boundPath(e);
  if (full && e.deleted) {
    bindRemoved(task, fd, e, full);
    return;
  }
  const here = full && inTaskRoot(task.pid, full);
  if (here) {
    // The dumped process's socket file outlives it; a new bind() needs the name free.
    const st = fs.lstatSync(here, { throwIfNoEntry: false });
    if (st?.isSocket()) fs.unlinkSync(here);
    else if (st) throw new Error(`unix socket:[${e.ino}] in task ${task.pid}: cannot bind to ${full}: a file that is no socket is there`);
  }
  bindIn(task, fd, e, name);
  if (here && e.file_perms) {
    fs.chmodSync(here, Number(e.file_perms.mode) & 0o7777);
    // By the task, as the ids are those of its user namespace (a container's) or the host's.
    const r = inDir(task.inj, e.name_dir, () => task.inj.call(SYS.fchownat, AT_FDCWD, task.inj.writeScratch(Buffer.from(`${cString(name)}\0`)),
      Number(e.file_perms!.uid), Number(e.file_perms!.gid), AT_SYMLINK_NOFOLLOW));
    if (isErrorResult(r)) throw new Error(`unix socket:[${e.ino}] in task ${task.pid}: cannot give ${full} to ${e.file_perms.uid}:${e.file_perms.gid}: ${errnoName(Number(-r))}`);
  }
}

/** bind() inside the task, from the entry's name_dir for a relative name. */
function bindIn(task: RestoreFilesTask, fd: number, e: Usk, name: Buffer): void {
  const r = inDir(task.inj, e.name_dir, () => sockAddrCall(task.inj, SYS.bind, fd, sockaddrUn(name)));
  if (isErrorResult(r)) {
    const code = errnoName(Number(-r));
    const hint = code === 'EADDRINUSE' ? ' (is the dumped process still running?)' : '';
    throw new Error(`unix socket:[${e.ino}] in task ${task.pid}: bind to ${printable(name)} failed with ${code}${hint}`);
  }
}

/**
 * A socket whose file had been removed: bound to its name (in directories made for it if they
 * are gone too; a file at the name now, another socket's, is moved aside meanwhile), then its
 * file renamed to a ghost its clients connect through. Once every task's connections are made,
 * the ghosts go, and then the directories made for them.
 */
function bindRemoved(task: RestoreFilesTask, fd: number, e: Usk, full: string): void {
  const root = (p: string) => inTaskRoot(task.pid, p);
  const made: string[] = [];
  for (let dir = path.dirname(full); !fs.existsSync(root(dir)); dir = path.dirname(dir)) made.unshift(dir);
  // Made by the task, with its ids: in a user namespace of its own, one of the host's root would
  // be no directory it may bind in.
  for (const dir of made) {
    const r = task.inj.call(SYS.mkdirat, AT_FDCWD, task.inj.writeScratch(Buffer.from(`${dir}\0`), 0), 0o755);
    if (isErrorResult(r)) throw new Error(`unix socket:[${e.ino}] in task ${task.pid}: cannot make ${dir} again to bind in: ${errnoName(Number(-r))}`);
  }
  const ghost = ghostOf(e);
  const ghostFile = root(path.join(ghost.dir, cString(ghost.name)));
  const aside = `${ghostFile}.aside`;
  const held = fs.lstatSync(root(full), { throwIfNoEntry: false }) !== undefined;
  if (held) fs.renameSync(root(full), aside);
  try {
    bindIn(task, fd, e, Buffer.from(e.name));
    fs.renameSync(root(full), ghostFile);
  } finally {
    if (held) fs.renameSync(aside, root(full));
  }
  // Connections wait until every task has its descriptors (later), some until after those
  // (a connect deferred from finish): the ghost goes after both, the directories after every ghost.
  task.later(() => task.later(() => {
    fs.rmSync(ghostFile, { force: true });
    task.later(() => {
      for (const dir of made.reverse()) {
        try {
          fs.rmdirSync(root(dir));
        } catch {
          // another restored socket is bound in it
        }
      }
    });
  }));
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
    const peeking = memoOf(ctx, 'unix-socket:peeking', () => new Set<number>());
    if (peeking.has(ino)) throw new Error(`${what} is in flight in its own queue (SCM_RIGHTS), which stasis cannot dump`);
    const name = d.name ?? Buffer.alloc(0);
    const entry: Record<string, unknown> = {
      ino, type: d.type, state: d.state, flags: f.fdinfo.flags & ~O_CLOEXEC, uflags: 0,
      backlog: d.wqueue, peer: pendingPeer(f, d, what), fown: zeroFown(), opts: dumpSkOpts(ctx.inj, f.fd, what), name,
    };
    requirePeerInDump(ctx, f, { ...d, peer: Number(entry.peer) }, what);
    if (d.shutdown) entry.shutdown = d.shutdown;
    if (name.length && name[0] !== 0) Object.assign(entry, dumpBoundPath(f, d, name, what, ctx.ids));
    peeking.add(ino);
    let packets: Packet[];
    try {
      packets = hasQueue(d) ? peekQueue(ctx, f.fd, d, what) : [];
    } finally {
      peeking.delete(ino);
    }
    return {
      type: FD_TYPE_UNIXSK, field: 'usk', entry,
      added(id) {
        for (const p of packets) {
          const scm = p.rights ? [{ type: SCM.RIGHTS, rights: p.rights }] : undefined;
          ctx.addImageEntry(SK_QUEUES, { id_for: id, length: p.data.length, ...(scm && { scm }) }, p.data);
        }
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

    const self = Number(e.peer) === Number(e.ino); // bound, then connected to its own name
    if (peer && !self && Number(peer.peer) === Number(e.ino)) {
      // Both ends are here: one socketpair, each end sending the other's queue.
      const [a, b] = socketpairIn(inj, AF.UNIX, type);
      sendPackets(task, b, queue, what);
      sendPackets(task, a, queueOf(task, Number(peer.id)), `unix socket:[${peer.ino}] in task ${task.pid}`);
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
      sendPackets(task, b, queue, what);
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
      const to = reachable(e);
      try {
        inDir(inj, to.dir, () => sendPackets(task, tmp, queue, what, sockaddrUn(to.name)));
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

/**
 * A datagram socket connected to a bound one, or a client whose connection waited in a listener's
 * queue: connect by name (deferred once if not bound yet).
 */
function connectToPeer(e: Usk, fd: number, task: RestoreFilesTask, deferred: boolean): void {
  if (!e.peer) return;
  const peer = unixSockets(task).get(Number(e.peer))!;
  if (Number(peer.ino) !== Number(e.ino) && Number(peer.peer) === Number(e.ino)) return; // a pair, made whole in open()
  // Connect by name, now that the peer is bound (through its ghost if its file was removed).
  const what = `unix socket:[${e.ino}] in task ${task.pid}`;
  if (!peer.name?.length) throw new Error(`${what} is connected to the unbound socket:[${peer.ino}], which stasis cannot restore yet`);
  const { dir, name } = reachable(peer);
  const r = inDir(task.inj, dir, () => sockAddrCall(task.inj, SYS.connect, fd, sockaddrUn(name)));
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
