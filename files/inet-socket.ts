// TCP and UDP sockets over IPv4 and IPv6 (CRIU's sk-inet.c), as far as they carry no connection:
// unbound, bound, listening (with its backlog), and UDP sockets connected to an address. The
// task itself is asked through injected getsockopt/getsockname, so the answers are those of its
// own network namespace; sock_diag adds what no getsockopt tells: a listener's backlog.
// An established TCP connection (with --tcp-established) adds its repair-mode state in
// tcp-stream-INO.img: files/tcp-stream.ts.
//
// Restore: socket, the options that matter before bind (SO_REUSEADDR/REUSEPORT, IPV6_V6ONLY,
// freebind), bind, listen; a connected UDP socket connects again; a UDP socket shut down (sock_diag
// tells) is shut down again.

import { SYS } from '../sys/arch.js';
import { errnoName, isErrorResult } from '../sys/errno.js';
import type { Injector } from '../sys/inject.js';
import { inetDiag } from '../sys/netlink.js';
import {
  AF, IPPROTO, IPV6_FREEBIND, IPV6_V6ONLY, IP_FREEBIND, SHUT, SO, SOCK, SOL_SOCKET, TCP_OPT, TCP_STATE,
  sockaddrInet, sockProtoName,
} from '../sys/socket.js';
import type { DumpedFile, DumpFilesContext, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { zeroFown } from './reg.js';
import {
  dumpSkOpts, getsockopt, getsockoptInt, restoreSkOpts, setsockopt, sockAddrCall, sockName,
  socketInode, socketIn,
} from './sockets.js';
import { F_SETFL, O_CLOEXEC, O_NONBLOCK } from '../sys/fcntl.js';
import { LocalCalls } from '../sys/local-calls.js';
import { takeTaskFd } from '../sys/native.js';
import { dumpTcpStream, isStreamState, restoreTcpStream, tcpStreamImageName } from './tcp-stream.js';
import { inNamespaceOf, sameNamespace } from '../sys/setns.js';

export const FD_TYPE_INETSK = 4;

const TCP_STATE_NAMES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT',
  'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'];

/** An address as CRIU keeps it: u32 words holding the network-order bytes. */
function addrWords(bytes: Buffer): number[] {
  return Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readUInt32LE(4 * i));
}

function addrBytes(words: readonly number[]): Buffer {
  const b = Buffer.alloc(4 * words.length);
  words.forEach((w, i) => b.writeUInt32LE(Number(w) >>> 0, 4 * i));
  return b;
}

function endpoint(family: number, bytes: Buffer, port: number): string {
  if (family === AF.INET) return `${Array.from(bytes).join('.')}:${port}`;
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(2 * i).toString(16));
  return `[${groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')}]:${port}`;
}

function protoName(family: number, proto: number): string {
  return `${proto === IPPROTO.TCP ? 'TCP' : 'UDP'}${family === AF.INET6 ? 'v6' : ''}`;
}

function dumpInet(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
  // Asked of a copy of the descriptor stasis holds: a socket's options and addresses are the
  // socket's, the same whoever asks (and no round trip into the task per question).
  const copy = takeTaskFd(f.pid, f.fd);
  try {
    return dumpInetCopy(f, ctx, copy);
  } finally {
    localCalls.close(copy);
  }
}

const localCalls = new LocalCalls();

function dumpInetCopy(f: OpenFd, ctx: DumpFilesContext, fd: number): DumpedFile {
  const inj = localCalls;
  const ino = socketInode(f.link);
  const int = (level: number, name: number) => getsockoptInt(inj, fd, level, name);
  const family = int(SOL_SOCKET, SO.DOMAIN);
  const type = int(SOL_SOCKET, SO.TYPE);
  const proto = int(SOL_SOCKET, SO.PROTOCOL);
  const where = `socket:[${ino}] (fd ${f.fd} of task ${f.pid})`;
  const tcp = type === SOCK.STREAM && proto === IPPROTO.TCP;
  const udp = type === SOCK.DGRAM && proto === IPPROTO.UDP;
  if ((family !== AF.INET && family !== AF.INET6) || (!tcp && !udp)) {
    throw new Error(`${where} is an inet socket of type ${type}, protocol ${proto}, which stasis cannot dump yet`);
  }
  const what = `${protoName(family, proto)} ${where}`;
  const src = sockName(inj, fd)!;
  const zero = Buffer.alloc(family === AF.INET ? 4 : 16);
  let state: number;
  let dst: { address: Buffer; port: number } = { address: zero, port: 0 };
  let backlog = 0;
  let shutdown = 0;
  if (tcp) {
    state = getsockopt(inj, fd, IPPROTO.TCP, TCP_OPT.INFO, 8).readUInt8(0); // tcp_info.tcpi_state
    if (isStreamState(state)) {
      // Established, or half-closed (one side or both shut down writing; the rest as established).
      const peer = sockName(inj, fd, true)!;
      const named = state === TCP_STATE.ESTABLISHED ? '' : ` (${TCP_STATE_NAMES[state]})`;
      const conn = `${what}, connected from ${endpoint(family, src.address, src.port)} to ${endpoint(family, peer.address, peer.port)}${named}`;
      const tcp = ctx.tcp;
      if (!tcp || (!tcp.established && !tcp.close)) throw new Error(`${conn}: an established TCP connection is dumped only with --tcp-established (or --tcp-close)`);
      dst = peer;
      if (!tcp.close) {
        tcp.lock?.({ family, src: src.address, sport: src.port, dst: peer.address, dport: peer.port });
        const stream = dumpTcpStream(f.pid, f.fd, conn, tcp.repaired);
        state = stream.state;
        ctx.writeImage(tcpStreamImageName(ino), [{ message: stream.entry, extra: stream.queues }]);
      }
    } else if (state !== TCP_STATE.LISTEN && state !== TCP_STATE.CLOSE) {
      throw new Error(`${what}: TCP connections (state ${TCP_STATE_NAMES[state] ?? state}) are not supported yet`);
    }
    if (state === TCP_STATE.LISTEN) {
      // Asked in stasis's network namespace first, then in the task's own (a container's).
      const d = inetDiag(family, IPPROTO.TCP, 1 << TCP_STATE.LISTEN, ino) ?? inetDiag(family, IPPROTO.TCP, 1 << TCP_STATE.LISTEN, ino, f.pid);
      if (!d) throw new Error(`${what} is not visible to sock_diag; stasis cannot dump its backlog`);
      // Connections in its accept queue are the clients' half-made calls: CRIU's --skip-in-flight
      // leaves them out (the listener comes back with an empty queue; those clients see a reset).
      if (d.rqueue && !ctx.skipInFlight) throw new Error(`${what} has ${d.rqueue} connection(s) not yet accepted (in flight): dumped only with --skip-in-flight, which drops them`);
      backlog = d.wqueue;
    }
  } else {
    const peer = sockName(inj, fd, true);
    state = peer ? TCP_STATE.ESTABLISHED : TCP_STATE.CLOSE;
    if (peer) dst = peer;
    // shutdown() of a UDP socket only shows in its sk_shutdown, which sock_diag reports.
    const anyState = (1 << (TCP_STATE_NAMES.length + 1)) - 1;
    const d = inetDiag(family, IPPROTO.UDP, anyState, ino) ?? inetDiag(family, IPPROTO.UDP, anyState, ino, f.pid);
    if (d?.shutdown) shutdown = d.shutdown;
  }
  const entry: Record<string, unknown> = {
    ino, family, type, proto, state, src_port: src.port, dst_port: dst.port,
    flags: f.fdinfo.flags & ~O_CLOEXEC, backlog, src_addr: addrWords(src.address),
    dst_addr: addrWords(dst.address), fown: zeroFown(), opts: dumpSkOpts(inj, fd, what),
  };
  if (shutdown) entry.shutdown = shutdown;
  if (family === AF.INET6) entry.v6only = int(IPPROTO.IPV6, IPV6_V6ONLY) !== 0;
  entry.ip_opts = {
    freebind: (family === AF.INET ? int(IPPROTO.IP, IP_FREEBIND) : int(IPPROTO.IPV6, IPV6_FREEBIND)) !== 0,
  };
  if (tcp) {
    entry.tcp_opts = {
      cork: int(IPPROTO.TCP, TCP_OPT.CORK) !== 0, nodelay: int(IPPROTO.TCP, TCP_OPT.NODELAY) !== 0,
      keepcnt: int(IPPROTO.TCP, TCP_OPT.KEEPCNT), keepidle: int(IPPROTO.TCP, TCP_OPT.KEEPIDLE),
      keepintvl: int(IPPROTO.TCP, TCP_OPT.KEEPINTVL),
    };
  }
  return { type: FD_TYPE_INETSK, field: 'isk', entry };
}

/**
 * The options of an inet socket that must be in place before it binds, then the rest (a
 * connection made in repair mode is bound already: its IPV6_V6ONLY is settled).
 */
function restoreInetOpts(inj: Injector, fd: number, e: Record<string, any>, connected = false): void {
  restoreSkOpts(inj, fd, e.opts ?? {});
  const family = Number(e.family);
  if (family === AF.INET6 && e.v6only !== undefined && !connected) setsockopt(inj, fd, IPPROTO.IPV6, IPV6_V6ONLY, e.v6only ? 1 : 0);
  if (e.ip_opts?.freebind) {
    if (family === AF.INET) setsockopt(inj, fd, IPPROTO.IP, IP_FREEBIND, 1);
    else setsockopt(inj, fd, IPPROTO.IPV6, IPV6_FREEBIND, 1);
  }
  const t = e.tcp_opts;
  if (t && Number(e.proto) === IPPROTO.TCP) {
    if (t.nodelay) setsockopt(inj, fd, IPPROTO.TCP, TCP_OPT.NODELAY, 1);
    if (t.cork) setsockopt(inj, fd, IPPROTO.TCP, TCP_OPT.CORK, 1);
    if (t.keepcnt) setsockopt(inj, fd, IPPROTO.TCP, TCP_OPT.KEEPCNT, Number(t.keepcnt));
    if (t.keepidle) setsockopt(inj, fd, IPPROTO.TCP, TCP_OPT.KEEPIDLE, Number(t.keepidle));
    if (t.keepintvl) setsockopt(inj, fd, IPPROTO.TCP, TCP_OPT.KEEPINTVL, Number(t.keepintvl));
  }
}

function openInet(e: Record<string, any>, task: RestoreFilesTask): number {
  const inj = task.inj;
  const family = Number(e.family);
  const proto = Number(e.proto);
  const what = `${protoName(family, proto)} socket:[${e.ino}] in task ${task.pid}`;
  const state = Number(e.state);
  if (proto === IPPROTO.TCP && isStreamState(state)) return openTcpConnection(e, task, what);
  const fd = socketIn(inj, family, Number(e.type), proto);
  restoreInetOpts(inj, fd, e);
  const src = addrBytes(e.src_addr ?? []);
  const srcPort = Number(e.src_port);
  if (srcPort || src.some((b) => b !== 0)) {
    const r = sockAddrCall(inj, SYS.bind, fd, sockaddrInet(family, src, srcPort));
    if (isErrorResult(r)) {
      const code = errnoName(Number(-r));
      const hint = code === 'EADDRINUSE' ? ' (is the dumped process still running?)' : '';
      throw new Error(`${what}: bind to ${endpoint(family, src, srcPort)} failed with ${code}${hint}`);
    }
  }
  if (state === TCP_STATE.LISTEN) inj.callChecked(SYS.listen, fd, Number(e.backlog));
  if (state === TCP_STATE.ESTABLISHED && proto === IPPROTO.UDP) {
    const dst = addrBytes(e.dst_addr ?? []);
    const r = sockAddrCall(inj, SYS.connect, fd, sockaddrInet(family, dst, Number(e.dst_port)));
    if (isErrorResult(r)) throw new Error(`${what}: connect to ${endpoint(family, dst, Number(e.dst_port))} failed with ${errnoName(Number(-r))}`);
  } else if (state !== TCP_STATE.LISTEN && state !== TCP_STATE.CLOSE) {
    throw new Error(`${what} was in state ${TCP_STATE_NAMES[state] ?? state}, which stasis cannot restore yet`);
  }
  // sk_shutdown bits (1 receive, 2 send) as shutdown()'s `how`; an unconnected socket takes
  // them too, though the call says ENOTCONN.
  const shut = Number(e.shutdown ?? 0);
  if (shut) {
    const r = inj.call(SYS.shutdown, fd, shut === 3 ? SHUT.RDWR : shut === 1 ? SHUT.RD : SHUT.WR);
    if (isErrorResult(r) && errnoName(Number(-r)) !== 'ENOTCONN') throw new Error(`${what}: shutdown failed with ${errnoName(Number(-r))}`);
  }
  if (Number(e.flags) & O_NONBLOCK) inj.callChecked(SYS.fcntl, fd, F_SETFL, O_NONBLOCK);
  return fd;
}

/**
 * An established (or half-closed) connection: rebuilt through repair mode by stasis in the task's network
 * namespace and handed to the task, live once the tree is (tcp-stream.ts) — or, with
 * --tcp-close or without its stream image, a fresh unconnected socket: the connection is gone.
 */
function openTcpConnection(e: Record<string, any>, task: RestoreFilesTask, what: string): number {
  const inj = task.inj;
  const family = Number(e.family);
  const stream = task.tcp?.close ? undefined : task.imageEntries(tcpStreamImageName(Number(e.ino)))[0];
  let fd: number;
  if (!stream) {
    fd = socketIn(inj, family, Number(e.type), Number(e.proto));
    restoreInetOpts(inj, fd, e);
  } else {
    if (!task.tcp) throw new Error(`${what}: an established connection is restored only with --tcp-established`);
    const make = () => restoreTcpStream(e, stream, what, addrBytes);
    const pending = sameNamespace(task.pid, 'net') ? make() : inNamespaceOf(task.pid, 'net', make);
    task.tcp.pending.push(pending);
    fd = task.importFd(pending.socket.fd);
    restoreInetOpts(inj, fd, e, true);
  }
  if (Number(e.flags) & O_NONBLOCK) inj.callChecked(SYS.fcntl, fd, F_SETFL, O_NONBLOCK);
  return fd;
}

export const inetSocketFile: FileKind = {
  type: FD_TYPE_INETSK,
  field: 'isk',
  claims: ({ pid, fd, link }) => link.startsWith('socket:[') && /^(TCP|UDP)(v6)?$/.test(sockProtoName(pid, fd) ?? ''),
  dump: dumpInet,
  inheritKey: (e) => `socket:[${Number(e.ino)}]`,
  open: openInet,
};
