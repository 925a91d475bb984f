// memfd: an anonymous shmem file with a name (link `/memfd:NAME (deleted)`). Every open of it
// is a memfd_file_entry (flags, position) pointing at one memfd_inode_entry in memfd.img (name,
// owner, mode, size, seals). The contents are kept as CRIU keeps a shmem object, in
// pagemap-shmem-<shmid>.img (shmid = the inode number) and a raw pages file, so CRIU restores
// them too; dumps from earlier stasis versions kept them in a ghost-file image, still read.
// Restore: memfd_create(name, MFD_ALLOW_SEALING), contents written, ftruncate to the size,
// owner and mode, then F_ADD_SEALS; every later open or mapping of the same inode, in any task
// of the tree, is a new description of that one file (MemfdInodes).
// dumpMemfdInode/createMemfdInode also serve memfd-backed mappings.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { errnoName } from '../sys/errno.js';
import type { Injector } from '../sys/inject.js';
import { rawSyscall } from '../sys/native.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { PAGE_SIZE, PE_PRESENT, imageTypeByName, pagemapImage, pagesFileName, readPagemap } from '../images/index.js';
import { ghostImageName, writeAllInTask, zeroFown } from './reg.js';
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
 * Create a memfd inode inside the task from its contents; returns an O_RDWR fd there.
 * `openImage` opens a file of the dump in the task (which may not see the images' directory).
 */
export function createMemfdInode(inj: Injector, c: MemfdContents, openImage: (file: string) => number): number {
  const { inode } = c;
  const name = String(inode.name);
  const fd = Number(inj.callChecked(SYS.memfd_create, inj.writeScratch(Buffer.from(`${name}\0`), 0), MFD_ALLOW_SEALING));
  inj.callChecked(SYS.ftruncate, fd, BigInt(inode.size));
  if (c.content) writeAllInTask(inj, fd, c.content, `memfd ${name}`);
  if (c.pagesFile && c.runs?.length) {
    // The task copies its own contents, file to file, inside the kernel (sendfile: the pages file
    // and the memfd are on different filesystems, which copy_file_range refuses).
    const src = openImage(c.pagesFile);
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
  if (!ghost && BigInt(inode.size ?? 0) === 0n) return { inode }; // empty: CRIU saves no pages for it
  if (!ghost) throw new Error(`memfd ${inode.name}: its contents (pagemap-shmem or ${image}) are missing`);
  return { inode, content: ghost.extra ?? new Uint8Array() };
}

/**
 * The memfd inodes of one restore (memfd.img's inode_id), each made once for the whole tree —
 * by the first task that maps or opens it — and reached by every other mapping and description
 * of it, in whatever task: stasis keeps a descriptor of each, and opens the file again through
 * it (/proc/self/fd/N) for each new description, which the task then takes over.
 */
export class MemfdInodes {
  private readonly own = new Map<number, number>();

  /** Task `hpid` (as stasis sees it) has just made inode `inodeId` as its descriptor `fd`. */
  made(inodeId: number, hpid: number, fd: number): void {
    this.own.set(inodeId, fs.openSync(`/proc/${hpid}/fd/${fd}`, O_RDWR));
  }

  /** A new description of inode `inodeId` with status flags `flags`, as stasis's descriptor; undefined if not made yet. */
  reopen(inodeId: number, flags: number): number | undefined {
    const own = this.own.get(inodeId);
    return own === undefined ? undefined : fs.openSync(`/proc/self/fd/${own}`, flags & ~O_CLOEXEC);
  }

  /** Stasis's descriptors, once nothing more is opened. */
  close(): void {
    for (const fd of this.own.values()) fs.closeSync(fd);
    this.own.clear();
  }
}

/** Stasis's descriptor `own` handed to the task by `give`, and closed here. */
function handOver(own: number, give: (fd: number) => number): number {
  try {
    return give(own);
  } finally {
    fs.closeSync(own);
  }
}

/**
 * A descriptor in the task of memfd inode `inodeId`, with status flags `flags`: a new
 * description of the inode where the tree has it already, else the inode made here.
 * `give` copies a descriptor of stasis into the task.
 */
export function memfdDescription(inodes: MemfdInodes, task: Pick<RestoreFilesTask, 'pid' | 'inj' | 'imageEntries' | 'imagePath'>,
  inodeId: number, flags: number, give: (fd: number) => number): number {
  const again = inodes.reopen(inodeId, flags);
  if (again !== undefined) return handOver(again, give);
  const made = createMemfdInode(task.inj, memfdInode(task, inodeId), (file) => handOver(fs.openSync(file, 'r'), give));
  inodes.made(inodeId, task.pid, made);
  if ((flags & ~(O_LARGEFILE | O_CLOEXEC)) === O_RDWR) return made; // memfd_create gave O_RDWR | O_LARGEFILE
  try {
    return handOver(inodes.reopen(inodeId, flags)!, give);
  } finally {
    task.inj.callChecked(SYS.close, made);
  }
}

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
    if (!task.memfds) throw new Error('a memfd, which this restore cannot make');
    const fd = memfdDescription(task.memfds, task, Number(e.inode_id), Number(e.flags), (own) => task.importFd(own));
    const inj = task.inj;
    const pos = BigInt(e.pos as bigint);
    if (pos !== 0n) inj.callChecked(SYS.lseek, fd, pos, SEEK_SET);
    return fd;
  },
};
