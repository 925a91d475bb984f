// A fresh, empty network namespace (runc's empty_ns = CLONE_NEWNET, criu's --empty-ns net):
// the namespace comes new from clone(); all it needs is its loopback up, as a new namespace's
// `lo` starts down. Done with injected calls in a task of the namespace: a datagram socket and
// SIOCGIFFLAGS / SIOCSIFFLAGS on "lo".

import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const IFF_UP = 0x1;
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;

export function bringUpLoopback(inj: Injector): void {
  const sock = Number(inj.callChecked(SYS.socket, AF_INET, SOCK_DGRAM, 0));
  try {
    const req = Buffer.alloc(IFREQ_SIZE);
    req.write('lo', 0, 'latin1');
    const at = inj.writeScratch(req);
    inj.callChecked(SYS.ioctl, sock, SIOCGIFFLAGS, at);
    const got = inj.readScratch(IFREQ_SIZE);
    got.writeUInt16LE(got.readUInt16LE(IFNAMSIZ) | IFF_UP, IFNAMSIZ);
    inj.callChecked(SYS.ioctl, sock, SIOCSIFFLAGS, inj.writeScratch(got));
  } finally {
    inj.call(SYS.close, sock);
  }
}
