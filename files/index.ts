// The kinds of open files stasis knows. Adding one: a module implementing FileKind, listed here.
// Order matters where links look alike: kinds that look deeper come before `reg`, which takes
// any path.
import type { FileKind } from './kind.js';
import { pipeFile } from './pipe.js';
import { regFile } from './reg.js';
import { eventfdFile } from './eventfd.js';
import { signalfdFile } from './signalfd.js';
import { timerfdFile } from './timerfd.js';
import { inotifyFile } from './inotify.js';
import { fanotifyFile } from './fanotify.js';
import { epollFile } from './epoll.js';
import { memfdFile } from './memfd.js';
import { fifoFile } from './fifo.js';
import { unixSocketFile } from './unix-socket.js';
import { inetSocketFile } from './inet-socket.js';
import { packetSocketFile } from './packet-socket.js';
import { ttyFile } from './tty.js';

export const fileKinds: readonly FileKind[] = [
  pipeFile,
  eventfdFile, signalfdFile, timerfdFile, inotifyFile, fanotifyFile, epollFile, memfdFile, fifoFile,
  unixSocketFile, inetSocketFile, packetSocketFile, ttyFile,
  regFile,
];

export function kindFor(f: { pid: number; fd: number; link: string }): FileKind | undefined {
  return fileKinds.find((k) => k.claims(f));
}

export function kindForType(type: number): FileKind | undefined {
  return fileKinds.find((k) => k.type === type);
}
