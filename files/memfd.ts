// memfd: an anonymous shmem file with a name (link `/memfd:NAME (deleted)`). Every open of it
// is a memfd_file_entry (flags, position) pointing at one memfd_inode_entry in memfd.img (name,
// owner, mode, size, seals). criu keeps the contents as a shmem object, in
// pagemap-shmem-<shmid>.img and a pages file. The files layer can only write and read images
// made of entries so far (pages files are raw), so stasis keeps the contents the way criu keeps
// a small unlinked file: a ghost_file_entry and the bytes in ghost-file-<shmid>.img, with shmid
// taken from the ghost id counter so it never names another ghost.
// Restore: memfd_create(name, MFD_ALLOW_SEALING), contents written, ftruncate to the size,
// owner and mode, then F_ADD_SEALS; later opens of the same inode reopen /proc/self/fd/N.
// dumpMemfdInode/createMemfdInode also serve memfd-backed mappings.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import { errnoName } from '../sys/errno.js';
import type { Injector } from '../sys/inject.js';
import { rawSyscall } from '../sys/native.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { ghostImageName, nextGhostId, openInTask, writeAllInTask, zeroFown } from './reg.js';

export const FD_TYPE_MEMFD = 18;
export const MEMFD_INODE_IMAGE = 'memfd.img';
const MEMFD_PREFIX = '/memfd:';
const DELETED = ' (deleted)';
const O_CLOEXEC = 0o2000000;
const O_RDWR = 2;
const O_LARGEFILE = 0o100000;
const SEEK_SET = 0;
const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;
const MFD_ALLOW_SEALING = 2;

/** The memfd name of an fd or map_files link, if it is one. */
export function memfdName(link: string): string | undefined {
  if (!link.startsWith(MEMFD_PREFIX) || !link.endsWith(DELETED)) return undefined;
  return link.slice(MEMFD_PREFIX.length, -DELETED.length);
}

/**
 * Record the memfd inode reached through `statPath` (/proc/PID/fd/N or /proc/PID/map_files/..)
 * once per dump: its memfd_inode_entry and contents. Returns its inode_id.
 */
export function dumpMemfdInode(statPath: string, name: string, ctx: Pick<DumpFilesContext, 'memo' | 'addImageEntry' | 'writeImage'>): number {
  const st = fs.statSync(statPath, { bigint: true });
  const key = `memfd:${st.dev}:${st.ino}`;
  const known = ctx.memo.get(key) as number | undefined;
  if (known !== undefined) return known;
  const inodeId = ((ctx.memo.get('memfd-inode-ids') as number | undefined) ?? 0) + 1;
  ctx.memo.set('memfd-inode-ids', inodeId);
  ctx.memo.set(key, inodeId);
  const fd = fs.openSync(statPath, 'r');
  let seals: bigint;
  let content: Buffer;
  try {
    seals = rawSyscall(SYS.fcntl, fd, F_GET_SEALS);
    if (seals < 0n) throw new Error(`memfd ${name} (${statPath}): F_GET_SEALS failed: ${errnoName(Number(-seals))}`);
    content = fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const shmid = nextGhostId(ctx.memo);
  ctx.writeImage(ghostImageName(shmid), [{
    message: { uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode), size: BigInt(content.length) },
    extra: content,
  }]);
  ctx.addImageEntry(MEMFD_INODE_IMAGE, {
    name, uid: Number(st.uid), gid: Number(st.gid), size: st.size, shmid, seals: Number(seals),
    inode_id: BigInt(inodeId), mode: Number(st.mode),
  });
  return inodeId;
}

/** Create a memfd inode inside the task from its memfd_inode_entry; returns an O_RDWR fd there. */
export function createMemfdInode(inj: Injector, inode: Record<string, any>, content: Uint8Array): number {
  const name = String(inode.name);
  const fd = Number(inj.callChecked(SYS.memfd_create, inj.writeScratch(Buffer.from(`${name}\0`), 0), MFD_ALLOW_SEALING));
  writeAllInTask(inj, fd, content, `memfd ${name}`);
  inj.callChecked(SYS.ftruncate, fd, BigInt(inode.size));
  if (inode.mode !== undefined) inj.callChecked(SYS.fchmod, fd, Number(inode.mode) & 0o7777);
  inj.call(SYS.fchown, fd, Number(inode.uid), Number(inode.gid)); // best effort
  const seals = Number(inode.seals ?? 0);
  if (seals) inj.callChecked(SYS.fcntl, fd, F_ADD_SEALS, seals);
  return fd;
}

/** The memfd_inode_entry and contents of inode `inodeId` of the dump. */
export function memfdInode(task: Pick<RestoreFilesTask, 'imageEntries'>, inodeId: number): { inode: Record<string, any>; content: Uint8Array } {
  const inode = task.imageEntries(MEMFD_INODE_IMAGE).find((m) => Number(m.message.inode_id) === inodeId)?.message;
  if (!inode) throw new Error(`${MEMFD_INODE_IMAGE} has no memfd inode ${inodeId}`);
  const image = ghostImageName(Number(inode.shmid));
  const ghost = task.imageEntries(image)[0];
  if (!ghost) throw new Error(`memfd ${inode.name}: its contents (${image}) are missing`);
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
      const { inode, content } = memfdInode(task, inodeId);
      fd = createMemfdInode(inj, inode, content);
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
