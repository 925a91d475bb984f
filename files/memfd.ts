// memfd: an anonymous shmem file with a name (link `/memfd:NAME (deleted)`). Every open of it
// is a memfd_file_entry (flags, position) pointing at one memfd_inode_entry in memfd.img (name,
// owner, mode, size, seals). The contents are kept as CRIU keeps a shmem object, in
// pagemap-shmem-<shmid>.img (shmid = the inode number) and a raw pages file, so CRIU restores
// them too; dumps from earlier stasis versions kept them in a ghost-file image, still read.
// Restore: memfd_create(name, MFD_ALLOW_SEALING), contents written, ftruncate to the size,
// owner and mode, then F_ADD_SEALS; later opens of the same inode reopen /proc/self/fd/N.
// dumpMemfdInode/createMemfdInode also serve memfd-backed mappings.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { errnoName } from '../sys/errno.js';
import type { Injector } from '../sys/inject.js';
import { rawSyscall } from '../sys/native.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { PAGE_SIZE, PE_PRESENT, imageTypeByName, pagesFileName, readPagemap } from '../images/index.js';
import { ghostImageName, openInTask, writeAllInTask, zeroFown } from './reg.js';
import { F_ADD_SEALS, F_GET_SEALS, O_CLOEXEC, O_LARGEFILE, O_RDWR } from '../sys/fcntl.js';

export const FD_TYPE_MEMFD = 18;
export const MEMFD_INODE_IMAGE = 'memfd.img';
const MEMFD_PREFIX = '/memfd:';
const DELETED = ' (deleted)';
const SEEK_SET = 0;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const MFD_ALLOW_SEALING = 2;

/** The memfd name of an fd or map_files link, if it is one. */
export function memfdName(link: string): string | undefined {
  if (!link.startsWith(MEMFD_PREFIX) || !link.endsWith(DELETED)) return undefined;
  return link.slice(MEMFD_PREFIX.length, -DELETED.length);
}

/**
 * Record the memfd inode reached through `statPath` (/proc/PID/fd/N or /proc/PID/map_files/..)
 * once per dump: its memfd_inode_entry, and its contents as CRIU keeps a shmem object:
 * pagemap-shmem-<shmid>.img (runs at offsets into the object) and a raw pages file. Only the
 * extents holding data are saved (SEEK_DATA/SEEK_HOLE): a large, mostly untouched shared
 * mapping costs what it holds. Returns its inode_id.
 */
export function dumpMemfdInode(statPath: string, name: string,
  ctx: Pick<DumpFilesContext, 'memo' | 'addImageEntry' | 'writeSharedPages'>): number {
  const st = fs.statSync(statPath, { bigint: true });
  const key = `memfd:${st.dev}:${st.ino}`;
  const known = ctx.memo.get(key) as number | undefined;
  if (known !== undefined) return known;
  const inodeId = ((ctx.memo.get('memfd-inode-ids') as number | undefined) ?? 0) + 1;
  ctx.memo.set('memfd-inode-ids', inodeId);
  ctx.memo.set(key, inodeId);
  const fd = fs.openSync(statPath, 'r');
  let seals: bigint;
  const runs: { vaddr: bigint; nrPages: number; flags: number }[] = [];
  const chunks: Buffer[] = [];
  try {
    seals = rawSyscall(SYS.fcntl, fd, F_GET_SEALS);
    if (seals < 0n) throw new Error(`memfd ${name} (${statPath}): F_GET_SEALS failed: ${errnoName(Number(-seals))}`);
    const size = Number(st.size);
    for (let at = 0; at < size;) {
      const data = Number(rawSyscall(SYS.lseek, fd, at, SEEK_DATA));
      if (data < 0 || data >= size) break;
      const hole = Math.min(Number(rawSyscall(SYS.lseek, fd, data, SEEK_HOLE)), size);
      const from = data - (data % PAGE_SIZE);
      const to = Math.ceil(hole / PAGE_SIZE) * PAGE_SIZE;
      const buf = Buffer.alloc(to - from);
      fs.readSync(fd, buf, 0, Math.min(to, size) - from, from);
      runs.push({ vaddr: BigInt(from), nrPages: (to - from) / PAGE_SIZE, flags: PE_PRESENT });
      chunks.push(buf);
      at = to;
    }
  } finally {
    fs.closeSync(fd);
  }
  const shmid = st.ino;
  ctx.writeSharedPages(shmid, runs, Buffer.concat(chunks), Math.ceil(Number(st.size) / PAGE_SIZE));
  ctx.addImageEntry(MEMFD_INODE_IMAGE, {
    name, uid: Number(st.uid), gid: Number(st.gid), size: st.size, shmid, seals: Number(seals),
    inode_id: BigInt(inodeId), mode: Number(st.mode),
  });
  return inodeId;
}

/**
 * A memfd inode's entry and where its contents are: runs of a pages file (CRIU's layout, and
 * stasis's), or the bytes of a ghost-file image (what earlier stasis dumps hold).
 */
export interface MemfdContents {
  inode: Record<string, any>;
  content?: Uint8Array;
  pagesFile?: string;
  /** Offset in the object, length, and offset in the pages file. */
  runs?: { at: number; len: number; fileOffset: number }[];
}

/**
 * Create a memfd inode inside the task from its contents; returns an O_RDWR fd there. `open`
 * gives the task a descriptor of the pages file (a task in a container's mount namespace cannot
 * open the images by their path: stasis opens them and hands the descriptor over).
 */
export function createMemfdInode(inj: Injector, c: MemfdContents,
  open: (inj: Injector, file: string) => number = (i, f) => openInTask(i, f, 0)): number {
  const { inode } = c;
  const name = String(inode.name);
  const fd = Number(inj.callChecked(SYS.memfd_create, inj.writeScratch(Buffer.from(`${name}\0`), 0), MFD_ALLOW_SEALING));
  inj.callChecked(SYS.ftruncate, fd, BigInt(inode.size));
  if (c.content) writeAllInTask(inj, fd, c.content, `memfd ${name}`);
  if (c.pagesFile && c.runs?.length) {
    // The task copies its own contents, file to file, inside the kernel (sendfile: the pages file
    // and the memfd are on different filesystems, which copy_file_range refuses).
    const src = open(inj, c.pagesFile);
    try {
      for (const r of c.runs) {
        const off = Buffer.alloc(8);
        off.writeBigInt64LE(BigInt(r.fileOffset), 0);
        const at = inj.writeScratch(off, 256); // the kernel advances it as it reads
        inj.callChecked(SYS.lseek, fd, r.at, SEEK_SET);
        for (let done = 0; done < r.len;) {
          const n = Number(inj.callChecked(SYS.sendfile, fd, src, at, r.len - done));
          if (n <= 0) throw new Error(`memfd ${name}: its pages file ended early`);
          done += n;
        }
      }
    } finally {
      inj.call(SYS.close, src);
    }
    inj.callChecked(SYS.lseek, fd, 0, SEEK_SET);
  }
  if (inode.mode !== undefined) inj.callChecked(SYS.fchmod, fd, Number(inode.mode) & 0o7777);
  inj.call(SYS.fchown, fd, Number(inode.uid), Number(inode.gid)); // best effort
  const seals = Number(inode.seals ?? 0);
  if (seals) inj.callChecked(SYS.fcntl, fd, F_ADD_SEALS, seals);
  return fd;
}

/** The memfd_inode_entry of inode `inodeId` of the dump, and where its contents are. */
export function memfdInode(task: Pick<RestoreFilesTask, 'imageEntries' | 'imagePath'>, inodeId: number): MemfdContents {
  const inode = task.imageEntries(MEMFD_INODE_IMAGE).find((m) => Number(m.message.inode_id) === inodeId)?.message;
  if (!inode) throw new Error(`${MEMFD_INODE_IMAGE} has no memfd inode ${inodeId}`);
  const entries = task.imageEntries(`pagemap-shmem-${Number(inode.shmid)}.img`);
  if (entries.length) {
    const map = readPagemap({ type: imageTypeByName('PAGEMAP'), entries });
    const pagesFile = task.imagePath(pagesFileName(map.pagesId));
    const runs = map.runs.filter((r) => r.offset !== undefined).map((r) => ({
      at: Number(r.vaddr), len: Math.min(r.nrPages * PAGE_SIZE, Number(inode.size) - Number(r.vaddr)), fileOffset: r.offset!,
    })).filter((r) => r.len > 0);
    return { inode, pagesFile, runs };
  }
  const image = ghostImageName(Number(inode.shmid));
  const ghost = task.imageEntries(image)[0];
  if (!ghost) throw new Error(`memfd ${inode.name}: its contents (pagemap-shmem or ${image}) are missing`);
  return { inode, content: ghost.extra ?? new Uint8Array() };
}

/** Memfd inodes already created in a task: inode_id → file id of the first description. */
const inodesOpened = new WeakMap<RestoreFilesTask, Map<number, number>>();

export const memfdFile: FileKind = {
  type: FD_TYPE_MEMFD,
  field: 'memfd',
  claims: ({ link }) => memfdName(link) !== undefined,
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
    const inodeId = dumpMemfdInode(`/proc/${f.pid}/fd/${f.fd}`, memfdName(f.link)!, ctx);
    return {
      type: FD_TYPE_MEMFD, field: 'memfd',
      entry: { flags: f.fdinfo.flags & ~O_CLOEXEC, pos: f.fdinfo.pos, fown: zeroFown(), inode_id: inodeId },
    };
  },
  inheritKey: (e) => `memfd:${Number(e.inode_id)}`,
  open(e, task: RestoreFilesTask): number {
    const inj = task.inj;
    const inodeId = Number(e.inode_id);
    const flags = Number(e.flags);
    const opened = inodesOpened.get(task) ?? new Map<number, number>();
    inodesOpened.set(task, opened);
    const first = opened.get(inodeId);
    const firstFd = first === undefined ? undefined : task.fdOf(first);
    let fd: number;
    if (firstFd !== undefined) {
      fd = openInTask(inj, `/proc/self/fd/${firstFd}`, flags);
    } else {
      fd = createMemfdInode(inj, memfdInode(task, inodeId), (_, file) => {
        const own = fs.openSync(file, 'r');
        try {
          return task.importFd(own);
        } finally {
          fs.closeSync(own);
        }
      });
      if ((flags & ~O_LARGEFILE) !== O_RDWR) { // memfd_create gave O_RDWR | O_LARGEFILE
        const created = fd;
        fd = openInTask(inj, `/proc/self/fd/${created}`, flags);
        inj.callChecked(SYS.close, created);
      }
      opened.set(inodeId, Number(e.id));
    }
    const pos = BigInt(e.pos as bigint);
    if (pos !== 0n) inj.callChecked(SYS.lseek, fd, pos, SEEK_SET);
    return fd;
  },
};
