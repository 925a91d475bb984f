// Regular files (and device nodes such as /dev/null, which CRIU keeps as regular files too):
// path, open flags, offset; the file's size and mode are recorded so restore can tell when the
// file it finds is not the one that was open.
//
// A file reached by a name that was removed (link `PATH (deleted)`: an open descriptor, a FIFO's
// path, a mapping, a working directory) is remapped, as criu does (remap-fpath.img names the
// file and its remap):
// - an inode with no name left is a "ghost": its inode, and a regular file's contents, go into
//   ghost-file-ID.img (up to criu's default ghost limit, 1 MiB); restore makes it again — file,
//   FIFO or directory — at its old name if free, else beside it, opens it, and removes the name;
// - an inode that still has other names is, with --link-remap, linked as link_remap.N beside
//   where the name was (or in the nearest directory above that exists) and that link recorded as
//   a file of the dump; restore links it back to the old name, opens it there, removes that name,
//   and the link once every task has its descriptors. Without --link-remap the dump refuses it.
// A removed inode is made once per restore where it can be reached again: through an earlier
// description of the same task, or the mapping that made it (its map_files link). A ghost file's
// contents are whole, or in criu's sparse chunks; its owner is set before its mode (chown clears
// the setuid and setgid bits), its times last.

import fs from 'node:fs';
import { SYS } from '../sys/arch.js';
import type { TaskCalls } from '../sys/inject.js';
import { zeroFown } from './fown.js';
import type { DumpFilesContext, DumpedFile, FileKind, OpenFd, RestoreFilesTask } from './kind.js';
import { O_ACCMODE, O_CLOEXEC, O_CREAT, O_EXCL, O_PATH, O_RDWR, O_TRUNC } from '../sys/fcntl.js';
import { errnoName } from '../sys/errno.js';
import { addressOf, nativeCString, rawSyscall } from '../sys/native.js';
import { readFdinfo } from '../sys/proc/index.js';
import type { IdsInside } from '../task/userns.js';

export const FD_TYPE_REG = 1;
const AT_FDCWD = -100;
const SEEK_SET = 0;
const DELETED = ' (deleted)';

export const REMAP_FPATH_IMAGE = 'remap-fpath.img';
/** remap_type */
const REMAP_LINKED = 0;
export const REMAP_GHOST = 1;
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

/** The mount (its id) that `path` (a /proc link: a cwd, a root) reaches, as its fdinfo says; 0 if unknown. */
export function mountIdOf(path: string): number {
  let fd: number;
  try {
    fd = fs.openSync(path, O_PATH | O_CLOEXEC);
  } catch {
    return 0;
  }
  try {
    return readFdinfo('self', fd).mntId;
  } finally {
    fs.closeSync(fd);
  }
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
 * What remapping a removed file takes of the dump: descriptors (DumpFilesContext) and files
 * that are not descriptors — mappings, a working directory (FileTable.remapContext).
 */
export interface RemapDumpContext {
  memo: Map<string, unknown>;
  addFile(file: DumpedFile): number;
  addImageEntry(image: string, message: Record<string, unknown>, extra?: Uint8Array): void;
  writeImage(image: string, entries: { message: Record<string, unknown>; extra?: Uint8Array }[]): void;
  /** criu's --link-remap: a removed file that has other names is linked to a temporary one. */
  linkRemap?: boolean;
  /** Undo `fn` if the dump fails. */
  onRollback?(fn: () => void): void;
  /**
   * The container's user namespace (the tree's, owning its other namespaces): a file's owner is
   * written as it sees it (as CRIU writes it), and set from inside it at restore.
   */
  ids?: IdsInside;
}

/**
 * The file a task reaches as `link` (its /proc link; `statPath` reaches the inode): a reg entry,
 * remapped when the name was removed — to a ghost (the inode's contents saved) when the inode
 * has no name left, to a link made beside it (--link-remap) when it has other names.
 */
export function dumpPathFile(pid: number, link: string, statPath: string, flags: number, pos: bigint,
  ctx: RemapDumpContext, who = `a file of task ${pid}`): DumpedFile {
  if (!link.endsWith(DELETED)) return { type: FD_TYPE_REG, field: 'reg', entry: regFileEntry(link, statPath, flags, pos) };
  const path = link.slice(0, -DELETED.length);
  const st = fs.statSync(statPath, { bigint: true });
  const what = `${who} is the deleted file ${path}`;
  const remap = st.nlink === 0n ? { id: dumpGhost(what, statPath, st, ctx), type: REMAP_GHOST }
    : { id: dumpLinkRemap(pid, what, path, statPath, st, ctx), type: REMAP_LINKED };
  return {
    type: FD_TYPE_REG, field: 'reg', entry: regFileEntry(path, statPath, flags, pos),
    added: (id) => ctx.addImageEntry(REMAP_FPATH_IMAGE, { orig_id: id, remap_id: remap.id, remap_type: remap.type }),
  };
}

const S_IFMT = BigInt(fs.constants.S_IFMT);
const fileType = (mode: bigint | number) => BigInt(mode) & S_IFMT;
const IS = { reg: BigInt(fs.constants.S_IFREG), dir: BigInt(fs.constants.S_IFDIR), fifo: BigInt(fs.constants.S_IFIFO) };

/**
 * Save a removed inode as a ghost (once per inode): a regular file with its contents, or a
 * FIFO or directory (made empty again on restore). Returns the ghost's id.
 */
function dumpGhost(what: string, statPath: string, st: fs.BigIntStats, ctx: RemapDumpContext): number {
  const type = fileType(st.mode);
  if (type !== IS.reg && type !== IS.dir && type !== IS.fifo) {
    throw new Error(`${what}, which is neither a regular file, a directory nor a FIFO; stasis cannot dump it`);
  }
  if (type === IS.reg && st.size > BigInt(GHOST_LIMIT)) {
    throw new Error(`${what} of ${st.size} bytes; stasis keeps deleted files up to ${GHOST_LIMIT} bytes (criu's ghost limit)`);
  }
  const key = `ghost:${st.dev}:${st.ino}`;
  let ghostId = ctx.memo.get(key) as number | undefined;
  if (ghostId === undefined) {
    ghostId = nextGhostId(ctx.memo);
    ctx.memo.set(key, ghostId);
    const content = type === IS.reg ? fs.readFileSync(statPath) : undefined;
    ctx.writeImage(ghostImageName(ghostId), [{
      message: {
        uid: ctx.ids ? ctx.ids.uid(Number(st.uid)) : Number(st.uid), gid: ctx.ids ? ctx.ids.gid(Number(st.gid)) : Number(st.gid),
        mode: Number(st.mode), dev: kernelDevOf(st.dev), ino: st.ino,
        atim: timeval({ sec: st.atimeNs / 1_000_000_000n, nsec: st.atimeNs % 1_000_000_000n }),
        mtim: timeval({ sec: st.mtimeNs / 1_000_000_000n, nsec: st.mtimeNs % 1_000_000_000n }),
        ...(content ? { size: BigInt(content.length) } : {}),
      },
      ...(content ? { extra: content } : {}),
    }]);
  }
  return ghostId;
}

const AT_SYMLINK_FOLLOW = 0x400;
const AT_REMOVEDIR = 0x200;
const EEXIST = 17;
const ENOENT = 2;

/**
 * --link-remap: a removed name of an inode that has others. As criu, a hard link to the inode
 * is made beside where the name was (link_remap.N; in the nearest directory that still exists)
 * and recorded as a file of the dump; the restore reopens the inode through it and removes it.
 * Once per inode; returns the file id of the link.
 */
function dumpLinkRemap(pid: number, what: string, path: string, statPath: string, st: fs.BigIntStats,
  ctx: RemapDumpContext): number {
  if (!ctx.linkRemap) {
    throw new Error(`${what}, which has ${st.nlink} other name(s); dump with --link-remap to keep it`);
  }
  const key = `linked:${st.dev}:${st.ino}`;
  const known = ctx.memo.get(key) as number | undefined;
  if (known !== undefined) return known;
  const from = nativeCString(statPath);
  for (let dir = path.slice(0, path.lastIndexOf('/')) || '/'; ;) {
    const n = ((ctx.memo.get('link-remap-names') as number | undefined) ?? 0) + 1;
    ctx.memo.set('link-remap-names', n);
    const name = `${dir === '/' ? '' : dir}/link_remap.${n}`;
    // The task's view of the path, through its root (a container's).
    const to = nativeCString(`/proc/${pid}/root${name}`);
    const r = rawSyscall(SYS.linkat, AT_FDCWD, addressOf(from), AT_FDCWD, addressOf(to), AT_SYMLINK_FOLLOW);
    if (r === -BigInt(EEXIST)) continue;
    if (r === -BigInt(ENOENT) && dir !== '/') {
      dir = dir.slice(0, dir.lastIndexOf('/')) || '/';
      continue;
    }
    if (r < 0n) throw new Error(`cannot link the removed ${path} back as ${name} (--link-remap): ${errnoName(Number(-r))}`);
    ctx.onRollback?.(() => fs.unlinkSync(`/proc/${pid}/root${name}`));
    const id = ctx.addFile({ type: FD_TYPE_REG, field: 'reg', entry: { flags: 0, pos: 0n, fown: zeroFown(), name } });
    ctx.memo.set(key, id);
    return id;
  }
}

/** What reopening a file of the dump takes in a task being restored. */
export interface RegOpenContext {
  inj: TaskCalls;
  imageEntries(image: string): { message: Record<string, any>; extra?: Uint8Array }[];
  /** The reg entry of another file of the dump (a link remap's link). */
  regFile(id: number): Record<string, unknown> | undefined;
  /** Run `fn` once every task has its descriptors (the caller may have no such moment). */
  later?(fn: () => void): void;
  /**
   * Copy descriptor `fd` of stasis into the task (its number there): a removed file stasis
   * reaches through another task's map_files link, which a task in a user namespace of its own
   * may not open.
   */
  importFd?(fd: number): number;
}

/**
 * Where this restore can reach the remapped inodes it made already (a mapping's map_files
 * link: as the tasks' /proc names it, and as stasis's does), by remap type and id; one table per
 * restore (the remap-fpath.img entries it read).
 */
const reachable = new WeakMap<object, Map<string, { inTask: string; host: string }>>();

function reachTable(ctx: RegOpenContext): Map<string, { inTask: string; host: string }> {
  const key = ctx.imageEntries(REMAP_FPATH_IMAGE);
  let m = reachable.get(key);
  if (!m) reachable.set(key, (m = new Map()));
  return m;
}

/** The remap-fpath.img entry of file `id`, if its name was removed. */
function remapOf(ctx: RegOpenContext, id: number): { type: number; id: number } | undefined {
  const r = ctx.imageEntries(REMAP_FPATH_IMAGE).find((x) => Number(x.message.orig_id) === id);
  return r && { type: Number(r.message.remap_type ?? REMAP_LINKED), id: Number(r.message.remap_id) };
}

/** Open reg entry `e` in the task with `flags`, through its remap if its name was removed. */
export function openRegEntry(ctx: RegOpenContext, e: Record<string, unknown>, flags: number): number {
  const remap = remapOf(ctx, Number(e.id));
  if (!remap) return openInTask(ctx.inj, String(e.name), flags);
  if (remap.type !== REMAP_GHOST && remap.type !== REMAP_LINKED) {
    throw new Error(`${String(e.name)} is remapped by a remap of type ${remap.type}, which stasis cannot restore`);
  }
  const there = reachTable(ctx).get(`${remap.type}:${remap.id}`);
  if (there && ctx.importFd) {
    // Opened by stasis (map_files wants privileges of the host's user namespace), handed over.
    const own = fs.openSync(there.host, flags & ~O_CLOEXEC);
    try {
      return ctx.importFd(own);
    } finally {
      fs.closeSync(own);
    }
  }
  if (there) return openInTask(ctx.inj, there.inTask, flags);
  return remap.type === REMAP_GHOST ? openGhost(ctx, String(e.name), remap.id, flags) : openLinked(ctx, String(e.name), remap.id, flags);
}

/**
 * Says that the removed inode reg entry `e` was remapped to (if it was) can be reached at `path`
 * from now on (the map_files link of a mapping of it, as the tasks' /proc names it; `host`: as
 * stasis's does): later openers of it open that, rather than make the inode again.
 */
export function noteReachable(ctx: RegOpenContext, e: Record<string, unknown>, path: string, host: string): void {
  const remap = remapOf(ctx, Number(e.id));
  const table = reachTable(ctx);
  const key = remap && `${remap.type}:${remap.id}`;
  if (key && !table.has(key)) table.set(key, { inTask: path, host });
}

/** Call in the task with a path argument (through the scratch page). */
function atPath(inj: TaskCalls, nr: number, path: string, ...rest: (number | bigint)[]): bigint {
  return inj.call(nr, AT_FDCWD, inj.writeScratch(Buffer.from(`${path}\0`), 0), ...rest);
}

/**
 * Run `make(path)` (which creates `path`), creating the directories missing above it first;
 * those are removed again (with whatever `made` leaves, after `use`) once `use` is done.
 */
function withParents<T>(inj: TaskCalls, path: string, make: () => bigint, use: () => T, unmake: () => void): T {
  const created: string[] = [];
  let r = make();
  if (r === -BigInt(ENOENT)) {
    // mkdir -p of the directories above, top down, keeping those it made.
    const parts = path.split('/').slice(1, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = `/${parts.slice(0, i).join('/')}`;
      const m = atPath(inj, SYS.mkdirat, dir, 0o700);
      if (m === 0n) created.push(dir);
      else if (m !== -BigInt(EEXIST)) break;
    }
    r = make();
  }
  try {
    if (r < 0n) throw new Error(`cannot make ${path} in task ${inj.pid}: ${errnoName(Number(-r))}`);
    try {
      return use();
    } finally {
      unmake();
    }
  } finally {
    for (const dir of created.reverse()) atPath(inj, SYS.unlinkat, dir, AT_REMOVEDIR);
  }
}

/**
 * Make a ghost's inode again — a file with its contents, a FIFO, a directory — at its old name
 * if that is free (so the restored link reads the same) or a name beside it, open it with
 * `flags`, and remove the name again.
 */
function openGhost(ctx: RegOpenContext, name: string, remapId: number, flags: number): number {
  const image = ghostImageName(remapId);
  const [ghost, ...chunks] = ctx.imageEntries(image);
  if (!ghost) throw new Error(`${name} was removed when dumped, and ${image} that holds it is missing`);
  const g = ghost.message;
  const inj = ctx.inj;
  const perm = Number(g.mode) & 0o7777;
  const type = fileType(Number(g.mode));
  const make = (path: string): bigint => (type === IS.dir ? atPath(inj, SYS.mkdirat, path, perm)
    : type === IS.fifo ? atPath(inj, SYS.mknodat, path, Number(fs.constants.S_IFIFO) | perm, 0)
      : atPath(inj, SYS.openat, path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, perm));
  let path = name;
  let r = make(path);
  if (r === -BigInt(EEXIST)) {
    path = `${name}.cr.${remapId.toString(16)}.ghost`;
    r = make(path);
  }
  let again = false;
  const attempt = () => (again ? (r = make(path)) : ((again = true), r));
  const unmake = () => { atPath(inj, SYS.unlinkat, path, type === IS.dir ? AT_REMOVEDIR : 0); };
  return withParents(inj, path, attempt, () => {
    if (type === IS.reg) {
      const wfd = Number(r);
      try {
        if (g.chunks) {
          // criu's sparse form: the data runs (ghost_chunk_entry: off, len, then the bytes), the
          // holes left unwritten, the size set last.
          for (const c of chunks) {
            inj.callChecked(SYS.lseek, wfd, BigInt(c.message.off ?? 0), SEEK_SET);
            writeAllInTask(inj, wfd, c.extra ?? new Uint8Array(), path);
          }
          inj.callChecked(SYS.ftruncate, wfd, BigInt(g.size ?? 0));
        } else {
          writeAllInTask(inj, wfd, ghost.extra ?? new Uint8Array(), path);
        }
        inj.call(SYS.fchown, wfd, Number(g.uid), Number(g.gid)); // best effort, as for any restored file
        inj.callChecked(SYS.fchmod, wfd, perm);
        setGhostTimes(inj, wfd, g);
        return (flags & O_ACCMODE) === O_RDWR && !(flags & ~(O_ACCMODE | O_CLOEXEC))
          ? Number(inj.callChecked(SYS.dup, wfd)) : openInTask(inj, path, flags);
      } finally {
        inj.call(SYS.close, wfd);
      }
    }
    atPath(inj, SYS.fchownat, path, Number(g.uid), Number(g.gid), 0);
    atPath(inj, SYS.fchmodat, path, perm); // past the umask
    return openInTask(inj, path, flags);
  }, unmake);
}

/** A ghost file's access and modification times, as dumped (both change nothing but ctime). */
function setGhostTimes(inj: TaskCalls, fd: number, g: Record<string, any>): void {
  if (!g.atim || !g.mtim) return;
  const times = Buffer.alloc(32); // struct timespec[2]: atime, mtime
  times.writeBigInt64LE(BigInt(g.atim.tv_sec), 0);
  times.writeBigInt64LE(BigInt(g.atim.tv_usec) * 1000n, 8);
  times.writeBigInt64LE(BigInt(g.mtim.tv_sec), 16);
  times.writeBigInt64LE(BigInt(g.mtim.tv_usec) * 1000n, 24);
  inj.callChecked(SYS.utimensat, fd, 0, inj.writeScratch(times, 0), 0);
}

/**
 * A link remap: the inode is linked back to its old name (so the restored link reads the same),
 * opened there and the name removed again; the link made at dump is removed once every task has
 * its descriptors (at once, when the caller has no such moment). Where the old name is taken,
 * the inode is opened through the link.
 */
function openLinked(ctx: RegOpenContext, name: string, remapId: number, flags: number): number {
  const lnk = ctx.regFile(remapId);
  if (!lnk) throw new Error(`${name} was removed when dumped and is remapped to file ${remapId}, which files.img does not have`);
  const inj = ctx.inj;
  const linkPath = String(lnk.name);
  const linkAt = () => inj.call(SYS.linkat, AT_FDCWD, inj.writeScratch(Buffer.from(`${linkPath}\0`), 0), AT_FDCWD,
    inj.writeScratch(Buffer.from(`${name}\0`), 4096), 0);
  const first = linkAt();
  if (first === -BigInt(ENOENT) && fs.existsSync(`/proc/${inj.pid}/root${linkPath}`) === false) {
    throw new Error(`${name} was removed when dumped and linked as ${linkPath} (--link-remap), which no longer exists`);
  }
  const fd = first === -BigInt(EEXIST) ? openInTask(inj, linkPath, flags)
    : withParents(inj, name, () => (first === -BigInt(ENOENT) ? linkAt() : first), () => openInTask(inj, name, flags),
      () => { atPath(inj, SYS.unlinkat, name, 0); });
  const table = reachTable(ctx);
  const cleanup = `cleanup:${remapId}`;
  if (!table.has(cleanup)) {
    table.set(cleanup, { inTask: linkPath, host: linkPath }); // (a mark only: removed once)
    const remove = () => { atPath(inj, SYS.unlinkat, linkPath, 0); };
    if (ctx.later) ctx.later(remove);
    else remove();
  }
  return fd;
}

/** Ghosts already recreated in a task: remap id → the file id of the first description opened. */
const ghostsOpened = new WeakMap<RestoreFilesTask, Map<number, number>>();

export const regFile: FileKind = {
  type: FD_TYPE_REG,
  field: 'reg',
  claims: ({ link }) => link.startsWith('/'),
  dump(f: OpenFd, ctx: DumpFilesContext): DumpedFile {
    const d = dumpPathFile(f.pid, f.link, `/proc/${f.pid}/fd/${f.fd}`, f.fdinfo.flags, f.fdinfo.pos, ctx, `fd ${f.fd} of task ${f.pid}`);
    // The mount it was opened on, in a tree with nested mount namespaces: which one it is in.
    // (Elsewhere left out: CRIU's restore of a plain tree, which has no mounts to look it up
    // in, then fails to remake a removed file.)
    if (f.fdinfo.mntId && ctx.mountNsPeers?.length) d.entry.mnt_id = f.fdinfo.mntId;
    return d;
  },
  inheritKey: (e) => String(e.name).replace(/^\//, ''),
  open(e, task: RestoreFilesTask): number {
    const flags = Number(e.flags) & ~(O_CREAT | O_EXCL | O_TRUNC);
    const fd = openRegInTask(task, e, flags);
    checkSameFile(task, fd, e);
    const pos = BigInt(e.pos as bigint | number);
    if (pos !== 0n && !(flags & O_PATH)) task.inj.callChecked(SYS.lseek, fd, pos, SEEK_SET);
    return fd;
  },
};

/**
 * Open reg entry `e` for a descriptor of the task (or a FIFO's path): a removed inode opened
 * for an earlier description of this task is reopened through it.
 */
export function openRegInTask(task: RestoreFilesTask, e: Record<string, unknown>, flags: number): number {
  const ctx: RegOpenContext = {
    inj: task.inj, imageEntries: (n) => task.imageEntries(n),
    regFile: (id) => task.file(id)?.reg as Record<string, unknown> | undefined, later: (fn) => task.later(fn),
    importFd: (fd) => task.importFd(fd),
  };
  const remap = remapOf(ctx, Number(e.id));
  // On a mount of another mount namespace of the tree: through a task of that namespace.
  const via = e.mnt_id !== undefined && Number(e.mnt_id) > 0 ? task.mountRoot?.(Number(e.mnt_id)) : undefined;
  if (!remap) return openInTask(task.inj, `${via?.task ?? ''}${String(e.name)}`, flags);
  const opened = ghostsOpened.get(task) ?? new Map<number, number>();
  ghostsOpened.set(task, opened);
  const key = remap.type * 0x1_0000_0000 + remap.id;
  const first = opened.get(key);
  const firstFd = first === undefined ? undefined : task.fdOf(first);
  if (firstFd !== undefined) return openInTask(task.inj, `/proc/self/fd/${firstFd}`, flags);
  const fd = openRegEntry(ctx, e, flags);
  opened.set(key, Number(e.id));
  return fd;
}

/** Refuse a file whose size changed since the dump (its contents can't be what the task expects). */
function checkSameFile(task: RestoreFilesTask, fd: number, e: Record<string, unknown>): void {
  if (e.size === undefined) return;
  const st = fs.statSync(`/proc/${task.pid}/fd/${fd}`, { bigint: true });
  if (st.size !== BigInt(e.size as bigint)) {
    throw new Error(`${String(e.name)} has size ${st.size}, but was ${e.size} bytes when dumped`);
  }
}
