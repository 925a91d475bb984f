// files.img on the dump side: every open file description once, with the id that fdinfo
// entries, VMAs (vma.shmid), fs (cwd/root) and mm (exe) refer to it by.

import type { TcpDump } from './kind.js';
import { SYS } from '../sys/arch.js';
import { rawSyscall, takeTaskFd } from '../sys/native.js';
import type { DumpedFile } from './kind.js';
import type { RemapDumpContext } from './reg.js';
import type { IdsInside } from '../task/userns.js';
import { PAGE_SIZE, pagemapImage, pagesFileName, type PageRun } from '../images/index.js';

const KCMP_FILE = 0;

export interface FileEntryMessage {
  type: number;
  id: number;
  [field: string]: unknown;
}

export class FileTable {
  private nextId = 1;
  readonly entries: FileEntryMessage[] = [];
  /** Descriptions already recorded, by /proc link: [pid, fd, id] to compare new fds against. */
  private seen = new Map<string, { pid: number; fd: number; id: number }[]>();
  /** Non-fd files (mappings, cwd, exe) by a key of the caller's choosing. */
  private byKey = new Map<string, number>();
  /** Entries file kinds add to shared images (pipes-data.img, sk-queues.img, ...), in order. */
  readonly images = new Map<string, { message: Record<string, unknown>; extra?: Uint8Array }[]>();
  /** Scratch space for file kinds, shared across the whole dump. */
  readonly memo = new Map<string, unknown>();
  /** Checks the kinds left for when every process is dumped (DumpFilesContext.atEnd). */
  private endChecks: (() => void)[] = [];

  atEnd(check: () => void): void {
    this.endChecks.push(check);
  }

  /** Every process of the tree is dumped: run the kinds' deferred checks, and order the entries. */
  checkAtEnd(): void {
    for (const check of this.endChecks.splice(0)) check();
    this.closeCopies();
    unixPeersFirst(this.entries);
  }

  addImageEntry(image: string, message: Record<string, unknown>, extra?: Uint8Array): void {
    const list = this.images.get(image) ?? [];
    list.push(extra ? { message, extra } : { message });
    this.images.set(image, list);
  }

  /** Raw (headerless) files the kinds write: pages files of memfd/shmem contents. */
  readonly rawImages = new Map<string, Uint8Array>();
  private nextPagesId = 1;

  /** A fresh pages-<id>.img number (processes and shared memory objects share the counter). */
  allocPagesId(): number {
    return this.nextPagesId++;
  }

  /** Pages of shared memory objects: those of the objects saved (scanned) and those written. */
  readonly sharedPages = { scanned: 0, written: 0 };

  /**
   * The contents of a shared memory object (shared anonymous memory, a memfd) as CRIU keeps
   * them: pagemap-shmem-<shmid>.img with `runs` at offsets into the object, and a pages file of
   * `data`, their bytes in order. `objectPages`: the object's size in pages. Counted here, where
   * they are written, for stats-dump (shpages_*).
   */
  writeSharedPages(shmid: bigint, runs: readonly Omit<PageRun, 'offset'>[], data: Uint8Array, objectPages: number): void {
    const pagesId = this.allocPagesId();
    this.setImage(`pagemap-shmem-${shmid}.img`, pagemapImage(pagesId, runs).entries);
    this.rawImages.set(pagesFileName(pagesId), data);
    this.sharedPages.scanned += objectPages;
    this.sharedPages.written += data.length / PAGE_SIZE;
  }

  setImage(image: string, entries: { message: Record<string, unknown>; extra?: Uint8Array }[]): void {
    this.images.set(image, entries);
  }

  /** Records a description; its `added` is told the id. */
  add(file: DumpedFile): number {
    const id = this.nextId++;
    this.entries.push({ type: file.type, id, [file.field]: { id, ...file.entry } });
    file.added?.(id);
    return id;
  }

  /** criu's --link-remap (reg.ts): removed files with other names may be linked to a temporary one. */
  linkRemap = false;

  /** --tcp-established / --tcp-close (inet-socket.ts, tcp-stream.ts); undefined: connections refused. */
  tcp?: TcpDump;

  /** --skip-in-flight (inet-socket.ts). */
  skipInFlight = false;

  /** The container's user namespace, files' owners seen through it (RemapDumpContext.ids). */
  ids?: IdsInside;

  /** Undoes what the dump made outside the images, should it fail. */
  private undo: (() => void)[] = [];

  onRollback(fn: () => void): void {
    this.undo.push(fn);
  }

  /** The dump failed: undo what it made outside the images (a link remap's link), newest first. */
  rollback(): void {
    for (const fn of this.undo.splice(0).reverse()) {
      try {
        fn();
      } catch {
        // gone already
      }
    }
  }

  /** What reg.ts needs to remap a removed file that is not a descriptor (a mapping, a cwd). */
  remapContext(): RemapDumpContext {
    return {
      memo: this.memo, addFile: (f) => this.add(f), linkRemap: this.linkRemap, onRollback: (fn) => this.onRollback(fn), ids: this.ids,
      addImageEntry: (image, message, extra) => this.addImageEntry(image, message, extra),
      writeImage: (image, entries) => this.setImage(image, entries),
    };
  }

  /** Every fd of every task dumped so far: its description's id, its /proc link and fd type. */
  private fds = new Map<number, Map<number, { id: number; link: string; type: number }>>();

  /** Records fd `fd` of `pid` (for its children, see inherited()). */
  recordFd(pid: number, fd: number, id: number, link: string, type: number): void {
    let mine = this.fds.get(pid);
    if (!mine) this.fds.set(pid, (mine = new Map()));
    mine.set(fd, { id, link, type });
  }

  /**
   * What fd `fd` of `pid` is when it is the description its parent has at the same number (an
   * fd inherited across fork and kept): one kcmp instead of reading the fd's link.
   */
  inherited(pid: number, parent: number, fd: number): { id: number; link: string; type: number } | undefined {
    const theirs = this.fds.get(parent)?.get(fd);
    if (!theirs) return undefined;
    return rawSyscall(SYS.kcmp, pid, parent, KCMP_FILE, fd, fd) === 0n ? theirs : undefined;
  }

  /** The id of a description reached through fd `fd` of `pid`, if an earlier fd shares it. */
  sharedWith(pid: number, fd: number, link: string): number | undefined {
    for (const other of this.seen.get(link) ?? []) {
      if (rawSyscall(SYS.kcmp, pid, other.pid, KCMP_FILE, fd, other.fd) === 0n) return other.id;
    }
    return undefined;
  }

  remember(pid: number, fd: number, link: string, id: number): void {
    const list = this.seen.get(link) ?? [];
    list.push({ pid, fd, id });
    this.seen.set(link, list);
  }

  /** stasis's own copies of descriptions seen only in flight, kept to compare fds with until the end. */
  private copies: number[] = [];

  /**
   * Fd `fd` of `pid` is a file in flight, in the task only while it is dumped: a copy of it
   * (pidfd_getfd) is what later fds of the tree are compared with, so that one sharing the
   * description gets its id.
   */
  rememberInFlight(pid: number, fd: number, link: string, id: number): void {
    const copy = takeTaskFd(pid, fd);
    this.copies.push(copy);
    this.remember(process.pid, copy, link, id);
  }

  /** Close stasis's copies of files in flight (the dump is over). */
  closeCopies(): void {
    for (const fd of this.copies.splice(0)) rawSyscall(SYS.close, fd);
  }

  /** One entry per key (e.g. a mapped file's path and open mode), made on first use. */
  once(key: string, make: () => DumpedFile): number {
    let id = this.byKey.get(key);
    if (id === undefined) {
      id = this.add(make());
      this.byKey.set(key, id);
    }
    return id;
  }
}

/**
 * Puts every unix socket after the socket it is connected to, unless that one is connected back
 * to it (a pair): CRIU's restore looks a one-way peer (a datagram socket's) up only among the
 * sockets it has read before, so it must come first. Entries keep their ids; nothing else moves.
 */
function unixPeersFirst(entries: FileEntryMessage[]): void {
  type Usk = { ino: number; peer?: number };
  const usk = (e: FileEntryMessage) => e.usk as Usk | undefined;
  const byIno = new Map<number, FileEntryMessage>();
  for (const e of entries) if (usk(e)) byIno.set(Number(usk(e)!.ino), e);
  const out: FileEntryMessage[] = [];
  const placed = new Set<FileEntryMessage>();
  const place = (e: FileEntryMessage, visiting: Set<FileEntryMessage>) => {
    if (placed.has(e) || visiting.has(e)) return; // a ring of one-way peers: as it comes
    const u = usk(e);
    const peer = u?.peer ? byIno.get(Number(u.peer)) : undefined;
    if (peer && Number(usk(peer)!.peer ?? 0) !== Number(u!.ino)) {
      visiting.add(e);
      place(peer, visiting);
    }
    placed.add(e);
    out.push(e);
  };
  for (const e of entries) place(e, new Set());
  entries.splice(0, entries.length, ...out);
}
