// Regular files (and device nodes such as /dev/null, which CRIU keeps as regular files too):
// path, open flags, offset; the file's size and mode are recorded so restore can tell when the
// file it finds is not the one that was open.
//
// A file that is open but unlinked (link `PATH (deleted)`) is a "ghost", as criu calls it: its
// inode and contents go into ghost-file-ID.img (up to criu's default ghost limit, 1 MiB), and
// remap-fpath.img says that the description is reopened through that ghost. Restore recreates
// the file next to where it was (contents whole, or in criu's sparse chunks; then owner, mode
// and times), opens it, and unlinks it again.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import type { TaskCalls } from '../sys/inject.js';
import { zeroFown } from './fown.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { O_ACCMODE, O_CLOEXEC, O_CREAT, O_EXCL, O_PATH, O_RDWR, O_TRUNC } from '../sys/fcntl.js';

export const FD_TYPE_REG = 1;
const AT_FDCWD = -100;
const SEEK_SET = 0;
const DELETED = ' (deleted)';

export const REMAP_FPATH_IMAGE = 'remap-fpath.img';
/** remap_type */
const REMAP_GHOST = 1;
/** criu's default --ghost-limit. */
export const GHOST_LIMIT = 1 << 20;

export { zeroFown };

/** A reg_file_entry for `path` as seen through `statPath` (a /proc link that reaches the inode). */
export function regFileEntry(path: string, statPath: string, flags: number, pos: bigint): Record<string, unknown> {
  const st = fs.statSync(statPath, { bigint: true });
  const entry: Record<string, unknown> = {
    flags: flags & ~O_CLOEXEC, pos, fown: zeroFown(), name: path,
  };
  if ((st.mode & BigInt(fs.constants.S_IFMT)) === BigInt(fs.constants.S_IFREG)) entry.size = st.size;
  entry.mode = Number(st.mode);
  return entry;
}

/** Open `path` with `flags` inside the task (through the scratch page); returns the fd there. */
export function openInTask(inj: TaskCalls, path: string, flags: number, mode = 0): number {
  const name = Buffer.from(`${path}\0`);
  const at = inj.writeScratch(name, 0);
  const r = inj.call(SYS.openat, AT_FDCWD, at, flags, mode);
  if (r < 0n) {
    const code = Number(-r);
    const why = code === 2 ? 'no such file where the task looks (deleted, or outside its root or mount namespace)'
      : code === 13 ? 'permission denied' : `errno ${code}`;
    throw new Error(`cannot reopen ${path} in task ${inj.pid}: ${why}`);
  }
  return Number(r);
}

/** write(2) all of `data` to `fd` inside the task, through the scratch area. */
export function writeAllInTask(inj: TaskCalls, fd: number, data: Uint8Array, what: string): void {
  const CHUNK = 1 << 20;
  for (let off = 0; off < data.length;) {
    const chunk = Buffer.from(data.buffer, data.byteOffset + off, Math.min(CHUNK, data.length - off));
    const at = inj.writeScratch(chunk, 0);
    let done = 0;
    while (done < chunk.length) {
      const r = inj.callChecked(SYS.write, fd, at + BigInt(done), chunk.length - done);
      if (r === 0n) throw new Error(`writing ${what} in task ${inj.pid}: no progress`);
      done += Number(r);
    }
    off += chunk.length;
  }
}

/** A userspace st_dev (glibc's encoding) as the kernel's dev_t, which criu's images hold. */
export function kernelDevOf(dev: bigint): number {
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return ((major << 20) | minor) >>> 0;
}

function timeval(t: { sec: bigint; nsec: bigint }): { tv_sec: bigint; tv_usec: bigint } {
  return { tv_sec: t.sec, tv_usec: t.nsec / 1000n };
}

/** The next id of a ghost file of this dump (criu counts them from 1, apart from file ids). */
export function nextGhostId(memo: Map<string, unknown>): number {
  const id = ((memo.get('ghost-ids') as number | undefined) ?? 0) + 1;
  memo.set('ghost-ids', id);
  return id;
}

export function ghostImageName(id: number): string {
  return `ghost-file-${id.toString(16)}.img`;
}

/**
 * Save an unlinked file's inode and contents as a ghost (once per inode) and remap the
 * description to it.
 */
function dumpGhost(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
  const path = f.link.slice(0, -DELETED.length);
  const statPath = `/proc/${f.pid}/fd/${f.fd}`;
  const st = fs.statSync(statPath, { bigint: true });
  const what = `fd ${f.fd} of task ${f.pid} is the deleted file ${path}`;
  if ((st.mode & BigInt(fs.constants.S_IFMT)) !== BigInt(fs.constants.S_IFREG)) {
    throw new Error(`${what}, which is not a regular file; stasis cannot dump it`);
  }
  if (st.size > BigInt(GHOST_LIMIT)) {
    throw new Error(`${what} of ${st.size} bytes; stasis keeps deleted files up to ${GHOST_LIMIT} bytes (criu's ghost limit)`);
  }
  const key = `ghost:${st.dev}:${st.ino}`;
  let ghostId = ctx.memo.get(key) as number | undefined;
  if (ghostId === undefined) {
    ghostId = nextGhostId(ctx.memo);
    ctx.memo.set(key, ghostId);
    const content = fs.readFileSync(statPath);
    ctx.writeImage(ghostImageName(ghostId), [{
      message: {
        uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode), dev: kernelDevOf(st.dev), ino: st.ino,
        atim: timeval({ sec: st.atimeNs / 1_000_000_000n, nsec: st.atimeNs % 1_000_000_000n }),
        mtim: timeval({ sec: st.mtimeNs / 1_000_000_000n, nsec: st.mtimeNs % 1_000_000_000n }),
        size: BigInt(content.length),
      },
      extra: content,
    }]);
  }
  const remapId = ghostId;
  const entry = regFileEntry(path, statPath, f.fdinfo.flags, f.fdinfo.pos);
  return {
    type: FD_TYPE_REG, field: 'reg', entry,
    added: (id) => ctx.addImageEntry(REMAP_FPATH_IMAGE, { orig_id: id, remap_id: remapId, remap_type: REMAP_GHOST }),
  };
}

/** Ghosts already recreated in a task: remap id → the file id of the first description opened. */
const ghostsOpened = new WeakMap<RestoreFilesTask, Map<number, number>>();

/**
 * Recreate a ghost at a temporary name next to its old path, open it with the description's
 * flags, and unlink it; a second description of the same ghost reopens the first one's inode.
 */
function openGhost(e: Record<string, unknown>, remapId: number, task: RestoreFilesTask, flags: number): number {
  const name = String(e.name);
  const opened = ghostsOpened.get(task) ?? new Map<number, number>();
  ghostsOpened.set(task, opened);
  const first = opened.get(remapId);
  const firstFd = first === undefined ? undefined : task.fdOf(first);
  if (firstFd !== undefined) return openInTask(task.inj, `/proc/self/fd/${firstFd}`, flags);
  const image = ghostImageName(remapId);
  const [ghost, ...chunks] = task.imageEntries(image);
  if (!ghost) throw new Error(`${name} was deleted when dumped, and ${image} that holds it is missing`);
  const g = ghost.message;
  // At its old name if that is free (so the restored link reads the same), else next to it.
  const inj = task.inj;
  let tmp = name;
  let wfd = Number(inj.call(SYS.openat, AT_FDCWD, inj.writeScratch(Buffer.from(`${tmp}\0`), 0),
    O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, Number(g.mode) & 0o7777));
  if (wfd < 0) {
    tmp = `${name}.cr.${remapId.toString(16)}.ghost`;
    wfd = openInTask(inj, tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, Number(g.mode) & 0o7777);
  }
  let fd: number;
  try {
    if (g.chunks) {
      // criu's sparse form: the data runs (ghost_chunk_entry: off, len, then the bytes), the
      // holes left unwritten, the size set last.
      for (const c of chunks) {
        inj.callChecked(SYS.lseek, wfd, BigInt(c.message.off ?? 0), SEEK_SET);
        writeAllInTask(inj, wfd, c.extra ?? new Uint8Array(), tmp);
      }
      inj.callChecked(SYS.ftruncate, wfd, BigInt(g.size ?? 0));
    } else {
      writeAllInTask(inj, wfd, ghost.extra ?? new Uint8Array(), tmp);
    }
    // Owner before mode (chown clears the setuid and setgid bits), times last (both change ctime
    // and nothing else).
    inj.call(SYS.fchown, wfd, Number(g.uid), Number(g.gid)); // best effort, as for any restored file
    inj.callChecked(SYS.fchmod, wfd, Number(g.mode) & 0o7777);
    if (g.atim && g.mtim) {
      const times = Buffer.alloc(32); // struct timespec[2]: atime, mtime
      times.writeBigInt64LE(BigInt(g.atim.tv_sec), 0);
      times.writeBigInt64LE(BigInt(g.atim.tv_usec) * 1000n, 8);
      times.writeBigInt64LE(BigInt(g.mtim.tv_sec), 16);
      times.writeBigInt64LE(BigInt(g.mtim.tv_usec) * 1000n, 24);
      inj.callChecked(SYS.utimensat, wfd, 0, inj.writeScratch(times, 0), 0);
    }
    fd = (flags & O_ACCMODE) === O_RDWR && !(flags & ~(O_ACCMODE | O_CLOEXEC))
      ? Number(inj.callChecked(SYS.dup, wfd)) : openInTask(inj, tmp, flags);
  } finally {
    inj.call(SYS.unlinkat, AT_FDCWD, inj.writeScratch(Buffer.from(`${tmp}\0`), 0), 0);
    inj.call(SYS.close, wfd);
  }
  opened.set(remapId, Number(e.id));
  return fd;
}

export const regFile: FileKind = {
  type: FD_TYPE_REG,
  field: 'reg',
  claims: ({ link }) => link.startsWith('/'),
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
    if (f.link.endsWith(DELETED)) return dumpGhost(f, ctx);
    const entry = regFileEntry(f.link, `/proc/${f.pid}/fd/${f.fd}`, f.fdinfo.flags, f.fdinfo.pos);
    return { type: FD_TYPE_REG, field: 'reg', entry };
  },
  inheritKey: (e) => String(e.name).replace(/^\//, ''),
  open(e, task: RestoreFilesTask): number {
    const name = String(e.name);
    const flags = Number(e.flags) & ~(O_CREAT | O_EXCL | O_TRUNC);
    const remap = task.imageEntries(REMAP_FPATH_IMAGE).find((r) => Number(r.message.orig_id) === Number(e.id));
    if (remap && Number(remap.message.remap_type ?? 0) !== REMAP_GHOST) {
      throw new Error(`${name} is remapped by a ${remap.message.remap_type} remap, which stasis cannot restore`);
    }
    const fd = remap ? openGhost(e, Number(remap.message.remap_id), task, flags) : openInTask(task.inj, name, flags);
    checkSameFile(task, fd, e);
    const pos = BigInt(e.pos as bigint | number);
    if (pos !== 0n && !(flags & O_PATH)) task.inj.callChecked(SYS.lseek, fd, pos, SEEK_SET);
    return fd;
  },
};

/** Refuse a file whose size changed since the dump (its contents can't be what the task expects). */
function checkSameFile(task: RestoreFilesTask, fd: number, e: Record<string, unknown>): void {
  if (e.size === undefined) return;
  const st = fs.statSync(`/proc/${task.pid}/fd/${fd}`, { bigint: true });
  if (st.size !== BigInt(e.size as bigint)) {
    throw new Error(`${String(e.name)} has size ${st.size}, but was ${e.size} bytes when dumped`);
  }
}
