// A human-readable summary of an image directory: the process tree, each
// process's threads, memory mappings (with how many of their pages were
// dumped), open files and namespaces. Read-only, and tolerant of missing
// optional images (CRIU leaves empty ones out).
import { bitNames, dictWord, fileFlagTable, ipText } from './crit-json.js';
import { ImageDir, INVENTORY_FILE } from './image-dir.js';
import type { ImageSource } from './image-source.js';
import { imageFileName } from './magic.js';
import { PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT, type PageRun, type Pagemap } from './pagemap.js';
import { enumValueName } from './schema.js';
import {
  VMA_ANON_SHARED,
  VMA_AREA_AIORING,
  VMA_AREA_GUARD,
  VMA_AREA_HEAP,
  VMA_AREA_MEMFD,
  VMA_AREA_SHSTK,
  VMA_AREA_SOCKET,
  VMA_AREA_SYSVIPC,
  VMA_AREA_UPROBES,
  VMA_AREA_VDSO,
  VMA_AREA_VSYSCALL,
  VMA_AREA_VVAR,
  VMA_FILE_PRIVATE,
  VMA_FILE_SHARED,
} from './vma.js';
import type { Message } from './wire.js';

const NS_KINDS = ['pid', 'net', 'ipc', 'uts', 'mnt', 'user', 'cgroup', 'time'] as const;

const TASK_STATES: Record<number, string> = { 1: 'alive', 2: 'dead', 3: 'stopped' };

// VMA kinds worth naming in a mapping line.
const VMA_NAMES: [number, string][] = [
  [VMA_AREA_VSYSCALL, '[vsyscall]'],
  [VMA_AREA_VDSO, '[vdso]'],
  [VMA_AREA_HEAP, '[heap]'],
  [VMA_AREA_SYSVIPC, 'sysv shm'],
  [VMA_AREA_SOCKET, 'packet ring'],
  [VMA_AREA_VVAR, '[vvar]'],
  [VMA_AREA_AIORING, 'aio ring'],
  [VMA_AREA_SHSTK, 'shadow stack'],
  [VMA_AREA_GUARD, 'guard pages'],
  [VMA_AREA_UPROBES, '[uprobes]'],
];
const MAP_GROWSDOWN = 0x100;

const hex = (v: bigint | number) => BigInt(v).toString(16);
const sk = (field: string, n: number) => dictWord('sk', field, Number(n)) ?? String(n);

/** A byte count for people: `512 B`, `1.5 KiB`, `3.0 MiB` (checkpointctl's style too). */
export function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

interface PageCount {
  present: number;
  lazy: number;
  parent: number;
}

/** Pages of `runs` inside [start, end). */
function countPages(runs: readonly PageRun[], start: bigint, end: bigint): PageCount {
  const count: PageCount = { present: 0, lazy: 0, parent: 0 };
  for (const run of runs) {
    const runEnd = run.vaddr + BigInt(run.nrPages * PAGE_SIZE);
    const lo = run.vaddr > start ? run.vaddr : start;
    const hi = runEnd < end ? runEnd : end;
    if (hi <= lo) continue;
    const pages = Number((hi - lo) / BigInt(PAGE_SIZE));
    if (run.flags & PE_PRESENT) count.present += pages;
    else if (run.flags & PE_PARENT) count.parent += pages;
    else if (run.flags & PE_LAZY) count.lazy += pages;
  }
  return count;
}

function pageText(c: PageCount, total: number): string {
  const parts = [`${c.present}/${total} pages dumped`];
  if (c.parent) parts.push(`${c.parent} in parent`);
  if (c.lazy) parts.push(`${c.lazy} lazy`);
  return parts.join(', ');
}

function protText(prot: number, flags: number): string {
  return `${prot & 1 ? 'r' : '-'}${prot & 2 ? 'w' : '-'}${prot & 4 ? 'x' : '-'}${flags & 1 ? 's' : 'p'}`;
}

/** Everything that does not depend on one process. */
class DirContext {
  readonly files = new Map<number, Message>();
  readonly memfdInodes = new Map<number, Message>();
  private readonly shmemRuns = new Map<string, PageRun[]>();

  constructor(readonly dir: ImageSource) {}

  async load(): Promise<void> {
    for (const f of await this.dir.messages('files.img')) this.files.set(Number(f.id), f);
    for (const m of await this.dir.messages('memfd.img')) this.memfdInodes.set(Number(m.inode_id), m);
  }

  /** Runs of a shared memory object's own pagemap, if it was dumped. */
  async shmemPages(shmid: bigint): Promise<PageRun[] | undefined> {
    const name = imageFileName('PAGEMAP', shmid, 1);
    if (!this.shmemRuns.has(name)) {
      if (!(await this.dir.has(name))) return undefined;
      this.shmemRuns.set(name, (await this.dir.pagemap(name)).runs);
    }
    return this.shmemRuns.get(name);
  }

  fileName(id: number): string | undefined {
    const f = this.files.get(id);
    return f?.reg?.name ?? (f?.memfd ? `memfd:${this.memfdInodes.get(Number(f.memfd.inode_id))?.name ?? '?'}` : undefined);
  }

  describeFile(id: number): string {
    const f = this.files.get(id);
    if (!f) return `file ${id} (not in files.img)`;
    const accMode = (flags: number) => ['r', 'w', 'rw', '?'][flags & 3];
    if (f.reg) {
      const flags = bitNames(f.reg.flags, fileFlagTable) || 'O_RDONLY';
      return `${f.reg.name}  ${flags}, pos ${f.reg.pos}`;
    }
    if (f.pipe) return `pipe:[${f.pipe.pipe_id}] (${accMode(f.pipe.flags)})`;
    if (f.fifo) return `fifo ${this.fileName(Number(f.fifo.regf_id)) ?? `pipe:[${f.fifo.pipe_id}]`}`;
    if (f.usk) {
      const peer = f.usk.peer ? `, peer socket:[${f.usk.peer}]` : '';
      const name = f.usk.name?.length ? `, name ${JSON.stringify(Buffer.from(f.usk.name).toString('latin1'))}` : '';
      const kind = `${sk('type', f.usk.type)} ${sk('state', f.usk.state)}`.toLowerCase();
      return `unix ${kind} socket:[${f.usk.ino}]${peer}${name}`;
    }
    if (f.isk) {
      const end = (addr: number[] | undefined, port: number) => `${(addr?.length && ipText(addr)) || '*'}:${port}`;
      const from = end(f.isk.src_addr, f.isk.src_port);
      const to = end(f.isk.dst_addr, f.isk.dst_port);
      const kind = `${sk('family', f.isk.family)} ${sk('proto', f.isk.proto)} ${sk('state', f.isk.state)}`.toLowerCase();
      return `${kind} socket:[${f.isk.ino}] ${from} -> ${to}`;
    }
    if (f.memfd) return `${this.fileName(id)}  ${bitNames(f.memfd.flags, fileFlagTable) || 'O_RDONLY'}`;
    if (f.tty) return `tty (tty-info ${f.tty.tty_info_id}) ${this.fileName(Number(f.tty.regf_id)) ?? ''}`.trim();
    if (f.efd) return `eventfd, counter ${f.efd.counter}`;
    if (f.epfd) return `eventpoll watching ${(f.epfd.tfd ?? []).length} fds`;
    if (f.sgfd) return `signalfd, mask 0x${hex(f.sgfd.sigmask)}`;
    if (f.tfd) return `timerfd, clock ${f.tfd.clockid}`;
    if (f.ify) return `inotify, ${(f.ify.wd ?? []).length} watches`;
    if (f.ffy) return `fanotify, ${(f.ffy.mark ?? []).length} marks`;
    if (f.nsf) return `namespace file, ns ${f.nsf.ns_id}`;
    if (f.pidfd) return `pidfd of pid ${f.pidfd.nspid}`;
    if (f.bpf) return `bpf map ${f.bpf.map_name}`;
    if (f.psk) return `packet socket`;
    if (f.nlsk) return `netlink socket, protocol ${f.nlsk.protocol}`;
    if (f.tunf) return `tun ${f.tunf.netdev ?? ''}`.trim();
    if (f.ext) return 'external (plugin) file';
    return `file ${id}`;
  }
}

/** argv, read from the dumped stack pages (as checkpointctl does); undefined if not dumped. */
async function commandLine(dir: ImageSource, mm: Message, pagemap: Pagemap | undefined): Promise<string | undefined> {
  const start = BigInt(mm.mm_arg_start);
  const length = Number(BigInt(mm.mm_arg_end) - start);
  if (!pagemap || length <= 0 || length > 1 << 20) return undefined;
  try {
    const args = (await dir.readMemory(pagemap, start, length)).toString('latin1').replace(/\0+$/, '').split('\0');
    return args.map((a) => (/^[\w./=:,+-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  } catch {
    return undefined;
  }
}

async function describeMemory(ctx: DirContext, pid: number, lines: string[]): Promise<void> {
  const mmName = imageFileName('MM', pid);
  if (!(await ctx.dir.has(mmName))) return;
  const mm = await ctx.dir.message(mmName);
  const pagemapName = imageFileName('PAGEMAP', pid);
  const pagemap = (await ctx.dir.has(pagemapName)) ? await ctx.dir.pagemap(pagemapName) : undefined;
  const runs = pagemap?.runs ?? [];
  const vmas: Message[] = mm.vmas ?? [];
  const total = countPages(runs, 0n, 2n ** 64n);
  const where = pagemap ? ` in ${imageFileName('PAGES', pagemap.pagesId)}` : '';
  lines.push(
    `  memory: ${vmas.length} mappings, ${total.present} pages dumped${where} (${sizeText(total.present * PAGE_SIZE)})` +
      (total.parent ? `, ${total.parent} pages in the parent dump` : '') +
      (total.lazy ? `, ${total.lazy} lazy` : ''),
  );
  if (mm.exe_file_id !== undefined) lines.push(`  exe: ${ctx.fileName(Number(mm.exe_file_id)) ?? `file ${mm.exe_file_id}`}`);
  const argv = await commandLine(ctx.dir, mm, pagemap);
  if (argv) lines.push(`  command line: ${argv}`);
  for (const vma of vmas) {
    const start = BigInt(vma.start);
    const end = BigInt(vma.end);
    const nr = Number((end - start) / BigInt(PAGE_SIZE));
    const status = Number(vma.status);
    const what: string[] = VMA_NAMES.filter(([bit]) => status & bit).map(([, name]) => name);
    let count = countPages(runs, start, end);
    if (status & (VMA_FILE_SHARED | VMA_FILE_PRIVATE)) what.push(ctx.fileName(Number(vma.shmid)) ?? `file ${vma.shmid}`);
    if (status & (VMA_ANON_SHARED | VMA_AREA_MEMFD)) {
      // Shared memory is dumped once, in the object's own pagemap, by offset.
      let shmid = BigInt(vma.shmid);
      if (status & VMA_AREA_MEMFD) {
        const inode = ctx.memfdInodes.get(Number(ctx.files.get(Number(vma.shmid))?.memfd?.inode_id));
        if (inode) shmid = BigInt(inode.shmid);
      }
      const shm = await ctx.shmemPages(shmid);
      const from = BigInt(vma.pgoff);
      if (shm) count = countPages(shm, from, from + (end - start));
      what.push(`shared memory ${shmid}`);
    }
    if (Number(vma.flags) & MAP_GROWSDOWN) what.push('[stack]');
    lines.push(
      `    ${hex(start)}-${hex(end)} ${protText(Number(vma.prot), Number(vma.flags))} ${String(nr).padStart(6)} pages, ` +
        `${pageText(count, nr)}${what.length ? `  ${what.join(' ')}` : ''}`,
    );
  }
}

async function describeFiles(ctx: DirContext, pid: number, ids: Message | undefined, lines: string[]): Promise<void> {
  if (!ids) return;
  const fdinfoName = imageFileName('FDINFO', ids.files_id);
  const fds = await ctx.dir.messages(fdinfoName);
  lines.push(`  files (${fdinfoName}): ${fds.length} descriptors`);
  for (const fd of fds) {
    const cloexec = Number(fd.flags) & 1 ? ' cloexec' : '';
    const kind = enumValueName('fd_types', Number(fd.type)).padEnd(9);
    lines.push(`    fd ${String(fd.fd).padStart(3)}  ${kind} ${ctx.describeFile(Number(fd.id))}${cloexec}`);
  }
  const fsName = imageFileName('FS', pid);
  if (await ctx.dir.has(fsName)) {
    const fs = await ctx.dir.message(fsName);
    lines.push(`  cwd ${ctx.fileName(Number(fs.cwd_id)) ?? '?'}, root ${ctx.fileName(Number(fs.root_id)) ?? '?'}, umask 0${Number(fs.umask ?? 0).toString(8)}`);
  }
}

function nsText(ids: Message, root: Message | undefined): string {
  return NS_KINDS.filter((k) => ids[`${k}_ns_id`] !== undefined)
    .map((k) => {
      const id = ids[`${k}_ns_id`];
      const shared = root && root[`${k}_ns_id`] === id ? ' (criu\'s)' : '';
      return `${k} ${id}${shared}`;
    })
    .join(', ');
}

async function describeProcess(ctx: DirContext, entry: Message, root: Message | undefined, lines: string[]): Promise<void> {
  const pid = Number(entry.pid);
  // A zombie's one thread is listed as 0 by CRIU; its core is core-PID.img.
  const listed: number[] = (entry.threads ?? []).map(Number);
  const threads = listed.length === 1 && listed[0] === 0 ? [pid] : listed;
  const coreName = imageFileName('CORE', pid);
  const core = (await ctx.dir.has(coreName)) ? await ctx.dir.message(coreName) : undefined;
  const tc = core?.tc;
  const state = tc ? (TASK_STATES[Number(tc.task_state)] ?? `state ${tc.task_state}`) : 'no core image';
  lines.push('');
  lines.push(`Process ${pid} "${tc?.comm ?? '?'}": ${state}, ${threads.length} thread${threads.length === 1 ? '' : 's'}`);
  for (const tid of threads) {
    const name = imageFileName('CORE', tid);
    if (!(await ctx.dir.has(name))) {
      lines.push(`  thread ${tid}: no ${name}`);
      continue;
    }
    const tcore = await ctx.dir.message(name);
    const regs = tcore.thread_info?.gpregs;
    const comm = tcore.thread_core?.comm ?? tc?.comm ?? '?';
    const at = regs ? ` ip 0x${hex(regs.ip)} sp 0x${hex(regs.sp)}` : '';
    lines.push(`  thread ${tid} "${comm}"${at}`);
  }
  const idsName = imageFileName('IDS', pid);
  const ids = (await ctx.dir.has(idsName)) ? await ctx.dir.message(idsName) : undefined;
  if (ids) {
    const own = NS_KINDS.some((k) => ids[`${k}_ns_id`] !== undefined && ids[`${k}_ns_id`] !== root?.[`${k}_ns_id`]);
    lines.push(own || !root ? `  namespaces: ${nsText(ids, root)}` : `  namespaces: all those criu ran in`);
  }
  await describeMemory(ctx, pid, lines);
  await describeFiles(ctx, pid, ids, lines);
}

function treeLines(entries: Message[], comms: Map<number, string>): string[] {
  const children = new Map<number, Message[]>();
  const pids = new Set(entries.map((e) => Number(e.pid)));
  const roots: Message[] = [];
  for (const e of entries) {
    const ppid = Number(e.ppid);
    if (pids.has(ppid)) children.set(ppid, [...(children.get(ppid) ?? []), e]);
    else roots.push(e);
  }
  const out: string[] = [];
  const walk = (e: Message, depth: number) => {
    const pid = Number(e.pid);
    out.push(`  ${'  '.repeat(depth)}${pid} ${comms.get(pid) ?? '?'}  (pgid ${e.pgid}, sid ${e.sid}, threads ${(e.threads ?? []).join(' ')})`);
    for (const c of children.get(pid) ?? []) walk(c, depth + 1);
  };
  roots.forEach((r) => walk(r, 0));
  return out;
}

/** mnt_entry.fstype → the filesystem's name (proto/mnt.proto). */
export const MOUNT_FS: Record<number, string> = {
  1: 'proc', 2: 'sysfs', 3: 'devtmpfs', 4: 'binfmt_misc', 5: 'tmpfs', 6: 'devpts', 8: 'pstore', 9: 'securityfs',
  10: 'fusectl', 11: 'debugfs', 12: 'cgroup', 14: 'mqueue', 15: 'fuse', 17: 'overlay', 19: 'tracefs', 23: 'cgroup2',
};

async function describeNamespaceImages(dir: ImageSource, lines: string[]): Promise<void> {
  const names = await dir.names();
  const notes: string[] = [];
  for (const name of names) {
    if (name.startsWith('utsns-')) {
      const uts = await dir.message(name);
      notes.push(`  ${name}: hostname "${uts.nodename}", domain "${uts.domainname}"`);
    } else if (name.startsWith('mountpoints-')) {
      const mounts = await dir.messages(name);
      notes.push(`  ${name}: ${mounts.length} mounts`);
      // The tree as the container saw it, parents first: where, what, and from where.
      const sorted = [...mounts].sort((a, b) => String(a.mountpoint).localeCompare(String(b.mountpoint)));
      for (const m of sorted) {
        const fs = MOUNT_FS[Number(m.fstype)] ?? (Number(m.fstype) ? `fstype ${m.fstype}` : String(m.source));
        const ro = Number(m.flags) & 1 ? ' ro' : '';
        const from = m.ext_key !== undefined ? `  external: ${m.ext_key}` : m.root !== '/' ? `  (${m.root} of it)` : '';
        notes.push(`    ${String(m.mountpoint).padEnd(22)} ${fs}${ro}${from}`);
      }
    } else if (name.startsWith('ipcns-var-')) {
      notes.push(`  ${name}: ipc namespace sysctls`);
    } else if (name.startsWith('timens-')) {
      const t = await dir.message(name);
      notes.push(`  ${name}: monotonic ${t.monotonic.tv_sec}s, boottime ${t.boottime.tv_sec}s at dump`);
    } else if (name.startsWith('netns-') || name.startsWith('userns-') || name.startsWith('pidns-')) {
      notes.push(`  ${name}`);
    } else if (name === 'cgroup.img') {
      const cg = await dir.message(name);
      notes.push(`  cgroup.img: ${(cg.sets ?? []).length} cgroup sets, ${(cg.controllers ?? []).length} controllers`);
    }
  }
  if (notes.length) lines.push('', 'Namespace and global images:', ...notes);
}

/** The summary text of an image directory. */
export async function describeImageDir(path: string): Promise<string> {
  return describeImages(await ImageDir.open(path), `Image directory ${path}`, path);
}

/** The summary text of a dump's images, wherever they are read from (`where` names it in errors). */
export async function describeImages(dir: ImageSource, title: string, where: string): Promise<string> {
  const complete = await dir.isComplete();
  // A dump, even an unfinished one, has its process tree written before anything that needs it.
  if (!complete && !(await dir.has('pstree.img'))) throw new Error(`${where}: not a dump (no ${INVENTORY_FILE}, no pstree.img)`);
  const lines: string[] = [title];
  const inventory = complete ? await dir.inventory() : undefined;
  if (inventory) {
    lines.push(`  complete dump: images version ${inventory.img_version}, lsm ${['none', 'selinux', 'apparmor'][Number(inventory.lsmtype ?? 0)] ?? inventory.lsmtype}`);
    if (inventory.root_ids) lines.push(`  criu's own namespaces at dump time: ${nsText(inventory.root_ids, undefined)}`);
  } else {
    lines.push(`  INCOMPLETE: no ${INVENTORY_FILE} (the dump did not finish)`);
  }
  const pstree = await dir.messages('pstree.img');
  const comms = new Map<number, string>();
  for (const e of pstree) {
    const name = imageFileName('CORE', e.pid);
    if (await dir.has(name)) comms.set(Number(e.pid), (await dir.message(name)).tc?.comm ?? '?');
  }
  const nthreads = pstree.reduce((n, e) => n + (e.threads ?? []).length, 0);
  lines.push('', `Process tree (pstree.img): ${pstree.length} processes, ${nthreads} threads`, ...treeLines(pstree, comms));
  const ctx = new DirContext(dir);
  await ctx.load();
  for (const e of pstree) await describeProcess(ctx, e, inventory?.root_ids, lines);
  await describeNamespaceImages(dir, lines);
  return `${lines.join('\n')}\n`;
}
