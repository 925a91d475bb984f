// Packet sockets (AF_PACKET, CRIU's sk-packet.c): type (SOCK_RAW / SOCK_DGRAM), protocol, the
// interface bound to, the SOL_PACKET options (TPACKET version, reserve, auxdata, origdev,
// vnet_hdr, loss, timestamp, copy threshold), memberships, the geometry of RX/TX rings and the
// fanout group. sock_diag, asked in the task's network namespace, tells what getsockopt cannot
// (memberships, rings, the binding); the fanout group with its flags comes from getsockopt.
//
// Left out: the packets queued to read and the contents of a ring (traffic, lost as on any
// network hiccup); a ring the task has mapped (its VMA is refused by the memory dump); a
// membership added more than once counts once; BPF filters (SO_ATTACH_FILTER) are not saved.
//
// Restore: socket(AF_PACKET, type, protocol) in the task (so in its network namespace), the
// options, the version before the rings (a ring fixes it), bind to the interface, memberships,
// then the fanout group, which needs the socket bound.

import { SYS } from '../sys/arch.js';
import { errnoName, isErrorResult } from '../sys/errno.js';
import { PDI, packetDiag } from '../sys/netlink.js';
import { AF, PACKET_OPT, SOL_PACKET, packetMreq, sockaddrLl, sockProtoName, tpacketReq3 } from '../sys/socket.js';
import type { DumpedFile, DumpFilesContext, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { zeroFown } from './reg.js';
import { dumpSkOpts, getsockoptInt, restoreSkOpts, setsockopt, sockAddrCall, socketInode, socketIn } from './sockets.js';
import { F_SETFL, O_CLOEXEC, O_NONBLOCK } from '../sys/fcntl.js';

export const FD_TYPE_PACKETSK = 10;
/** packet_sock_entry.fanout when the socket is in no group (the field's default). */
const NO_FANOUT = 0xffffffff;

/** A 16-bit value's bytes swapped: the image keeps the protocol in network order, as socket() takes it. */
function swap16(v: number): number {
  return ((v & 0xff) << 8) | ((v >> 8) & 0xff);
}

function dumpPacket(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
  const ino = socketInode(f.link);
  const where = `packet socket:[${ino}] (fd ${f.fd} of task ${f.pid})`;
  const d = packetDiag(ino, f.pid);
  if (!d) throw new Error(`${where} is not visible to sock_diag in the task's network namespace; stasis cannot dump it`);
  const fanout = getsockoptInt(ctx.inj, f.fd, SOL_PACKET, PACKET_OPT.FANOUT);
  const entry: Record<string, unknown> = {
    type: d.type, protocol: swap16(d.protocol), flags: f.fdinfo.flags & ~O_CLOEXEC, ifindex: d.index, fown: zeroFown(),
    opts: dumpSkOpts(ctx.inj, f.fd, where), version: d.version, reserve: d.reserve,
    aux_data: !!(d.flags & PDI.AUXDATA), orig_dev: !!(d.flags & PDI.ORIGDEV), vnet_hdr: !!(d.flags & PDI.VNETHDR),
    loss: !!(d.flags & PDI.LOSS), timestamp: d.tstamp, copy_thresh: d.copyThresh,
    mclist: d.mclist.map((m) => ({ index: m.index, type: m.type, addr: m.addr })),
  };
  if (fanout) entry.fanout = fanout >>> 0;
  if (d.rxRing) entry.rx_ring = d.rxRing;
  if (d.txRing) entry.tx_ring = d.txRing;
  return { type: FD_TYPE_PACKETSK, field: 'psk', entry };
}

function openPacket(e: Record<string, any>, task: RestoreFilesTask): number {
  const inj = task.inj;
  const protocol = swap16(Number(e.protocol));
  const what = `packet socket (type ${e.type}, protocol 0x${protocol.toString(16)}) in task ${task.pid}`;
  const fd = socketIn(inj, AF.PACKET, Number(e.type), Number(e.protocol));
  const set = (name: number, value: Buffer | number, label: string) => {
    try {
      setsockopt(inj, fd, SOL_PACKET, name, value);
    } catch (err) {
      throw new Error(`${what}: cannot set ${label}: ${(err as Error).message}`, { cause: err });
    }
  };
  restoreSkOpts(inj, fd, e.opts ?? {});
  if (Number(e.version)) set(PACKET_OPT.VERSION, Number(e.version), `TPACKET version ${e.version}`);
  if (Number(e.reserve)) set(PACKET_OPT.RESERVE, Number(e.reserve), 'PACKET_RESERVE');
  if (e.aux_data) set(PACKET_OPT.AUXDATA, 1, 'PACKET_AUXDATA');
  if (e.orig_dev) set(PACKET_OPT.ORIGDEV, 1, 'PACKET_ORIGDEV');
  if (e.vnet_hdr) set(PACKET_OPT.VNET_HDR, 1, 'PACKET_VNET_HDR');
  if (e.loss) set(PACKET_OPT.LOSS, 1, 'PACKET_LOSS');
  if (Number(e.timestamp)) set(PACKET_OPT.TIMESTAMP, Number(e.timestamp), 'PACKET_TIMESTAMP');
  if (Number(e.copy_thresh)) set(PACKET_OPT.COPY_THRESH, Number(e.copy_thresh), 'PACKET_COPY_THRESH');
  if (e.rx_ring) set(PACKET_OPT.RX_RING, tpacketReq3(e.rx_ring), 'the RX ring');
  if (e.tx_ring) set(PACKET_OPT.TX_RING, tpacketReq3(e.tx_ring), 'the TX ring');
  const ifindex = Number(e.ifindex);
  if (ifindex) {
    const r = sockAddrCall(inj, SYS.bind, fd, sockaddrLl(protocol, ifindex));
    if (isErrorResult(r)) throw new Error(`${what}: bind to interface ${ifindex} failed with ${errnoName(Number(-r))}`);
  }
  for (const m of (e.mclist ?? []) as Record<string, any>[]) {
    set(PACKET_OPT.ADD_MEMBERSHIP, packetMreq(Number(m.index), Number(m.type), Buffer.from(m.addr ?? [])),
      `membership type ${m.type} on interface ${m.index}`);
  }
  const fanout = e.fanout === undefined ? NO_FANOUT : Number(e.fanout) >>> 0;
  if (fanout !== NO_FANOUT) set(PACKET_OPT.FANOUT, fanout | 0, `fanout group ${fanout & 0xffff}`);
  if (Number(e.flags) & O_NONBLOCK) inj.callChecked(SYS.fcntl, fd, F_SETFL, O_NONBLOCK);
  return fd;
}

export const packetSocketFile: FileKind = {
  type: FD_TYPE_PACKETSK,
  field: 'psk',
  claims: ({ pid, fd, link }) => link.startsWith('socket:[') && sockProtoName(pid, fd) === 'PACKET',
  dump: dumpPacket,
  inheritKey: (e) => `packet:${Number(e.id)}`,
  open: openPacket,
};
