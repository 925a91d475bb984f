// Reading a dump for restore: every image read and checked before any process exists, into
// one ProcessImages per process and what the tree's namespaces hold (LoadedImages).

import { lockMethodOf, type DumpLock, type LockedConnection } from '../../net-ns/network-lock.js';
import { isStreamState, tcpStreamImageName } from '../../files/tcp-stream.js';
import { IPPROTO } from '../../sys/socket.js';
import fs from 'node:fs';
import { ImageDir, decodeImage, imageFileName, INVENTORY_FILE, MANIFEST_FILE, pagesFileName, printable, type Message } from '../../images/index.js';
import { applying, applyingAsync } from '../errors.js';
import { checkFdTable, type FdinfoEntry } from '../../files/fdtable.js';
import type { FileEntryMessage } from '../../files/table.js';
import { CLONE } from '../clone.js';
import type { FsEntry } from '../fs.js';
import { VMA, checkVmas, vmaName, type MmEntry } from '../mm.js';
import { checkPageRuns } from '../pages.js';
import { restoredRegs, type ThreadInfoX86 } from '../regs.js';
import { SYSV_KINDS, type SysvImages, shmPagesFromPagemaps, sysvImageName } from '../sysv-ipc.js';
import { NESTED_KINDS, type NestedKind, type NestedNsImage } from '../nested-ns.js';
import { netdevImageName, netnsImageName } from '../../net-ns/netns.js';
import { SECCOMP_IMAGE, type SeccompFilterEntry } from '../seccomp.js';
import { TASK_ALIVE, TASK_DEAD, TASK_STOPPED } from '../tree.js';
import { type MntEntry, mountsImageName } from '../../mount-ns/mounts.js';
import type { TaskKobjIds } from '../ids.js';
import { usernsImageName, type UsernsEntry } from '../userns.js';
import {
  NEWTIME, ipcVarImageName, restoreNamespaceFlags, timensImageName, utsnsImageName, type IpcVarEntry, type TimensEntry,
  type UtsEntry,
} from '../namespaces.js';

const MARCH_X86_64 = 1;

export interface ProcessImages {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
  state: number;
  cores: Map<number, Message>;
  mm?: MmEntry;
  pagemap?: Awaited<ReturnType<ImageDir['pagemap']>>;
  pagesFile?: string;
  /** The pages file's bytes, when checking the dump read them already. */
  pagesBytes?: Buffer;
  fdinfos?: FdinfoEntry[];
  /** fdinfo-N.img, where its descriptors are. */
  fdinfoFile?: string;
  fs?: FsEntry;
}

export interface LoadedImages {
  procs: ProcessImages[];
  /** CLONE_NEW* flags of the namespaces the dumped tree had of its own. */
  nsFlags: number;
  mounts?: MntEntry[];
  uts?: UtsEntry;
  ipc?: IpcVarEntry;
  sysv?: SysvImages;
  /** The network namespace's links (netdev-N.img), when it was dumped with its contents. */
  net?: { nsId: number; devices: Message[] };
  /**
   * The name of the network namespace when it was left external at dump (netns-N.img's
   * ext_key): the restore is given it (--inherit-fd fd[N]:NAME) and puts the tree into it.
   */
  externalNet?: string;
  timens?: TimensEntry;
  /** The namespace ids of the root task (ids-PID.img), which name the namespace images. */
  rootIds?: TaskKobjIds;
  /** The tree's user namespaces (userns-N.img), by id: those of its processes and their parents. */
  userns: Map<number, UsernsEntry>;
  /** Each live process's user namespace when it is not the host's (the dumper's), by image PID. */
  userNsOf: Map<number, number>;
  /** Each live process's mount namespace (ids-PID.img's mnt_ns_id), by image PID. */
  mntNsOf: Map<number, number>;
  /**
   * The mount namespaces nested inside the tree (any but the root's), by id: their mounts
   * (mountpoints-ID.img), in the order of their mountinfo (see mount-ns/nested.ts).
   */
  nestedMounts: Map<number, MntEntry[]>;
  /** The ipc and uts namespaces nested inside the tree (any but the root's), by id (task/nested-ns.ts). */
  nestedNs: Map<number, NestedNsImage>;
  /** Each live process's nested ipc and uts namespaces, by image PID (none: the root's). */
  nestedNsOf: Map<number, Partial<Record<NestedKind, number>>>;
  /** What the dump locked (its method and run id, its connections), lifted once restored. */
  dumpLock: DumpLock;
  /** Whether the dump holds established connections to rebuild (tcp-stream images). */
  tcpStreams: boolean;
  seccomp: SeccompFilterEntry[];
  /** Full path of a file of the dump. */
  file(name: string): string;
  files: Map<number, FileEntryMessage>;
  extraImage(name: string): { message: Message; extra?: Uint8Array }[];
}

/** The largest PID Linux hands out (PID_MAX_LIMIT on 64-bit). */
const PID_MAX = 4194304;

/** Refuses a core image a thread cannot be given (a damaged one), before any task exists. */
function checkCore(core: Message, main: boolean): void {
  if (core.mtype !== MARCH_X86_64) throw new Error('not an x86_64 task');
  if (main && !core.tc) throw new Error('no task part (tc)');
  if (Number(core.tc?.task_state) === TASK_DEAD) return; // a zombie: it only exits
  const ti = core.thread_info as ThreadInfoX86 | undefined;
  if (!ti?.gpregs || !ti.fpregs) throw new Error('no registers (thread_info)');
  restoredRegs(ti); // refuses a 32-bit task
}

/** Whether core-PID.img is there and says the process is dead (a zombie). */
async function deadProcess(images: ImageDir, pid: number): Promise<boolean> {
  const name = imageFileName('CORE', pid);
  if (!fs.existsSync(images.file(name))) return false;
  return Number((await images.message(name)).tc?.task_state) === TASK_DEAD;
}

/** Read and check every image before any process is created. */
/** The established connections of a dump's files that have their tcp-stream image. */
function establishedStreams(files: Iterable<Record<string, any>>, exists: (image: string) => boolean): LockedConnection[] {
  const streams: LockedConnection[] = [];
  const words = (w: number[] = []) => Buffer.concat(w.map((x) => { const b = Buffer.alloc(4); b.writeUInt32LE(Number(x) >>> 0); return b; }));
  for (const f of files) {
    const e = f.isk;
    if (!e || Number(e.proto) !== IPPROTO.TCP || !isStreamState(Number(e.state))) continue;
    if (!exists(tcpStreamImageName(Number(e.ino)))) continue;
    streams.push({ family: Number(e.family), src: words(e.src_addr), sport: Number(e.src_port), dst: words(e.dst_addr), dport: Number(e.dst_port) });
  }
  return streams;
}

/**
 * What a dump locked, read as far as the images allow (for a restore that cannot load them: the
 * lock of a tree in the host's namespace goes all the same); nothing when unknown.
 */
export async function dumpLockOf(dir: string): Promise<DumpLock> {
  const none: DumpLock = { method: 'skip', hostNet: false, conns: [] };
  try {
    const images = await ImageDir.open(dir);
    const inventory = await images.inventory();
    const root = Number((await images.image('pstree.img')).entries[0]?.message.pid);
    const ids = (await images.message(imageFileName('IDS', root))) as unknown as TaskKobjIds;
    if (ids.net_ns_id !== (inventory.root_ids as TaskKobjIds | undefined)?.net_ns_id) return none;
    const conns = establishedStreams(await images.messages('files.img'), (name) => fs.existsSync(images.file(name)));
    return { method: lockMethodOf(inventory.network_lock_method as number | undefined), runId: runIdOf(inventory), hostNet: true, conns };
  } catch {
    return none;
  }
}

function runIdOf(inventory: Message): string | undefined {
  return inventory.dump_criu_run_id ? String(inventory.dump_criu_run_id) : undefined;
}

export async function load(dir: string): Promise<LoadedImages> {
  let images: ImageDir;
  try {
    images = await ImageDir.open(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${printable(dir)}: no such image directory`);
    throw e; // not a directory, or an image in it that is not a regular file: said as it is
  }
  if (!(await images.isComplete())) throw new Error(`${INVENTORY_FILE}: missing: ${printable(dir)} holds no complete dump`);
  await images.checkDump();
  const inventory = await images.inventory();
  if (inventory.img_version !== 2) throw new Error(`${INVENTORY_FILE}: image version ${inventory.img_version} is not supported`);
  const files = new Map<number, FileEntryMessage>();
  for (const f of await images.messages('files.img')) files.set(Number(f.id), f as FileEntryMessage);
  const criuMade = !(await images.has(MANIFEST_FILE));

  const procs: ProcessImages[] = [];
  let rootIds: TaskKobjIds | undefined;
  const mntNsOf = new Map<number, number>();
  const userns = new Map<number, UsernsEntry>();
  const userNsOf = new Map<number, number>();
  const nestedMounts = new Map<number, MntEntry[]>();
  const nestedNs = new Map<number, NestedNsImage>();
  const nestedNsOf = new Map<number, Partial<Record<NestedKind, number>>>();
  const pstree = (await images.image('pstree.img')).entries.map((e) => e.message);
  if (!pstree.length) throw new Error('pstree.img: no process');
  const seen = new Set<number>();
  for (const e of pstree) {
    const pid = Number(e.pid);
    // CRIU lists a zombie's one thread as 0, or as whatever number its memory held (it has no
    // threads left to read): its core is core-PID, which says it is dead.
    let threads = ((e.threads ?? []) as number[]).map(Number).filter((tid) => tid !== 0);
    if (threads.length === 1 && threads[0] !== pid && await deadProcess(images, pid)) threads = [];
    if (!threads.length) threads.push(pid);
    applying('pstree.img', `process ${pid}`, () => {
      if (threads[0] !== pid) throw new Error(`its first thread is ${threads[0]}, not the process itself`);
      for (const tid of [pid, ...threads.slice(1)]) {
        if (!Number.isSafeInteger(tid) || tid < 1 || tid > PID_MAX) throw new Error(`PID ${tid} is out of range`);
        if (seen.has(tid)) throw new Error(`PID ${tid} is listed twice`);
        seen.add(tid);
      }
    });
    const cores = new Map<number, Message>();
    for (const tid of threads) {
      const name = imageFileName('CORE', tid);
      const core = await images.message(name);
      applying(name, `thread ${tid}`, () => checkCore(core, tid === pid));
      cores.set(tid, core);
    }
    const tc = cores.get(pid)!.tc;
    const p: ProcessImages = {
      pid, ppid: Number(e.ppid), pgid: Number(e.pgid), sid: Number(e.sid), threads, cores,
      state: Number(tc.task_state),
    };
    if (![TASK_ALIVE, TASK_DEAD, TASK_STOPPED].includes(p.state)) throw new Error(`core-${pid}.img: task ${pid}: unknown state ${p.state}`);
    if (p.ppid && !procs.some((q) => q.pid === p.ppid)) throw new Error(`pstree.img: process ${pid} comes before its parent ${p.ppid}`);
    if (!p.ppid && procs.length) throw new Error(`pstree.img: process ${pid} is a second root`);
    if (p.state !== TASK_DEAD) {
      const ids = await images.message(imageFileName('IDS', pid));
      rootIds ??= ids as unknown as TaskKobjIds;
      const hostUserNs = inventory.root_ids?.user_ns_id;
      if (ids.user_ns_id !== undefined && hostUserNs !== undefined && Number(ids.user_ns_id) !== Number(hostUserNs)) {
        const nsId = Number(ids.user_ns_id);
        userNsOf.set(pid, nsId);
        for (let id: number | undefined = nsId; id !== undefined && !userns.has(id); id = userns.get(id)!.parent_id) {
          const name = usernsImageName(id);
          if (!fs.existsSync(images.file(name))) throw new Error(`${name}: missing: process ${pid} is in user namespace ${nsId}`);
          const e = (await images.message(name)) as unknown as UsernsEntry;
          if (e.parent_id !== undefined) e.parent_id = Number(e.parent_id);
          // CRIU's images (no manifest of stasis's) do not say it: CRIU clones the root with the
          // tree's other namespaces and its user namespace at once, made in that one.
          if (!p.ppid && criuMade && restoreNamespaceFlags(rootIds, inventory.root_ids as TaskKobjIds) & ~CLONE.NEWUSER) e.owns_tree_ns = true;
          userns.set(id, e);
        }
        // Its threads are cloned inside it, their TIDs chosen through stasis's pid namespace
        // (but in a container's user namespace owning the tree's: by the process, with set_tid).
        if (threads.length > 1 && rootIds.pid_ns_id !== undefined && Number(rootIds.pid_ns_id) !== Number(inventory.root_ids?.pid_ns_id)
          && !userns.get(nsId)!.owns_tree_ns) {
          throw new Error(`${imageFileName('IDS', pid)}: process ${pid} has ${threads.length} threads in a user namespace of its own and a pid namespace of the tree's, which stasis cannot restore yet`);
        }
      }
      if (ids.mnt_ns_id !== undefined) {
        const nsId = Number(ids.mnt_ns_id);
        mntNsOf.set(pid, nsId);
        if (nsId !== Number(rootIds.mnt_ns_id) && !nestedMounts.has(nsId)) {
          const name = mountsImageName(nsId);
          if (!fs.existsSync(images.file(name))) throw new Error(`${name}: missing: process ${pid} has a mount namespace of its own inside the tree, and the dump has not its mounts`);
          nestedMounts.set(nsId, (await images.messages(name)) as unknown as MntEntry[]);
        }
      }
      for (const kind of NESTED_KINDS) {
        const field = `${kind}_ns_id` as const;
        if (ids[field] === undefined || rootIds[field] === undefined || Number(ids[field]) === Number(rootIds[field])) continue;
        const nsId = Number(ids[field]);
        nestedNsOf.set(pid, { ...nestedNsOf.get(pid), [kind]: nsId });
        if (nestedNs.has(nsId)) continue;
        const e: NestedNsImage = { kind, id: nsId };
        if (kind === 'uts') {
          const name = utsnsImageName(nsId);
          if (!fs.existsSync(images.file(name))) throw new Error(`${name}: missing: process ${pid} has a uts namespace of its own inside the tree`);
          e.uts = (await images.message(name)) as unknown as UtsEntry;
        } else {
          const name = ipcVarImageName(nsId);
          if (fs.existsSync(images.file(name))) e.ipc = (await images.message(name)) as unknown as IpcVarEntry;
          e.sysv = { shm: [], sem: [], msg: [] };
          for (const k of SYSV_KINDS) {
            const file = images.file(sysvImageName(k, nsId));
            if (fs.existsSync(file)) e.sysv[k] = decodeImage(fs.readFileSync(file), sysvImageName(k, nsId)).entries;
          }
          shmPagesFromPagemaps(e.sysv.shm, (n) => images.file(n));
        }
        nestedNs.set(nsId, e);
      }
      const mmFile = imageFileName('MM', pid);
      p.mm = (await images.message(mmFile)) as MmEntry;
      applying(mmFile, `task ${pid}`, () => checkVmas(p.mm!.vmas));
      const pagemapFile = imageFileName('PAGEMAP', pid);
      p.pagemap = await applyingAsync(pagemapFile, `task ${pid}`, () => images.pagemap(pagemapFile));
      applying(pagemapFile, `task ${pid}`, () => checkPageRuns(p.pagemap!.runs, p.mm!.vmas));
      p.pagesFile = images.file(pagesFileName(p.pagemap.pagesId));
      p.pagesBytes = images.checkedRaw(pagesFileName(p.pagemap.pagesId));
      const need = p.pagemap.runs.reduce((n, r) => (r.offset !== undefined ? Math.max(n, r.offset + r.nrPages * 4096) : n), 0);
      const have = fs.existsSync(p.pagesFile) ? fs.statSync(p.pagesFile).size : -1;
      if (have < need) {
        throw new Error(`${pagesFileName(p.pagemap.pagesId)}: ${have < 0 ? 'missing' : `truncated (${have} of ${need} bytes)`}`);
      }
      const fdinfoFile = imageFileName('FDINFO', ids.files_id);
      p.fdinfos = (await images.messages(fdinfoFile)) as FdinfoEntry[];
      p.fdinfoFile = fdinfoFile;
      applying(fdinfoFile, `task ${pid}`, () => checkFdTable(p.fdinfos!, files));
      const fsFile = imageFileName('FS', pid);
      p.fs = (await images.message(fsFile)) as FsEntry;
      const fileVmas = p.mm.vmas.filter((v) => v.status & (VMA.FILE_PRIVATE | VMA.FILE_SHARED));
      const refs: [string, number][] = [
        [`${mmFile}: exe_file_id`, p.mm.exe_file_id], [`${fsFile}: cwd_id`, p.fs.cwd_id], [`${fsFile}: root_id`, p.fs.root_id],
        ...fileVmas.filter((v) => !(v.status & VMA.MEMFD)).map((v): [string, number] => [`${mmFile}: ${vmaName(v)}`, Number(v.shmid)]),
      ];
      for (const [by, id] of refs) {
        if (!files.get(id)?.reg) throw new Error(`${by} refers to regular file ${id}, which files.img does not have`);
      }
      for (const v of fileVmas.filter((x) => x.status & VMA.MEMFD)) {
        if (!files.get(Number(v.shmid))?.memfd) throw new Error(`${mmFile}: ${vmaName(v)} maps memfd ${v.shmid}, which files.img does not have`);
      }
    }
    procs.push(p);
  }
  const extras = new Map<string, { message: Message; extra?: Uint8Array }[]>();
  const extraImage = (name: string) => {
    let e = extras.get(name);
    if (!e) {
      const file = images.file(name);
      e = fs.existsSync(file) ? decodeImage(fs.readFileSync(file), name).entries : [];
      extras.set(name, e);
    }
    return e;
  };
  // Which user namespace of the tree owns each nested one (the others: the host's).
  for (const [id, e] of userns) {
    for (const nsId of e.owns_ns_ids ?? []) {
      const n = nestedNs.get(Number(nsId));
      if (n) n.owner = id;
    }
  }
  const nsFlags = rootIds ? restoreNamespaceFlags(rootIds, inventory.root_ids as TaskKobjIds) : 0;
  if ((nsFlags & CLONE.NEWPID) && procs[0]!.pid !== 1) throw new Error(`ids-${procs[0]!.pid}.img: task ${procs[0]!.pid}: in a pid namespace of the dump's own, but not its init (PID 1)`);
  const mounts = nsFlags & CLONE.NEWNS
    ? (await images.messages(mountsImageName(rootIds!.mnt_ns_id!))) as unknown as MntEntry[] : undefined;
  const uts = nsFlags & CLONE.NEWUTS
    ? (await images.message(utsnsImageName(rootIds!.uts_ns_id!))) as unknown as UtsEntry : undefined;
  const ipcFile = nsFlags & CLONE.NEWIPC ? ipcVarImageName(rootIds!.ipc_ns_id!) : undefined;
  const ipc = ipcFile && fs.existsSync(images.file(ipcFile))
    ? (await images.message(ipcFile)) as unknown as IpcVarEntry : undefined;
  const sysv = nsFlags & CLONE.NEWIPC ? {
    shm: extraImage(sysvImageName('shm', rootIds!.ipc_ns_id!)),
    sem: extraImage(sysvImageName('sem', rootIds!.ipc_ns_id!)),
    msg: extraImage(sysvImageName('msg', rootIds!.ipc_ns_id!)),
  } : undefined;
  if (sysv) shmPagesFromPagemaps(sysv.shm, (n) => images.file(n));
  const netdev = nsFlags & CLONE.NEWNET ? netdevImageName(rootIds!.net_ns_id!) : undefined;
  const netnsFile = nsFlags & CLONE.NEWNET ? netnsImageName(rootIds!.net_ns_id!) : undefined;
  const externalNet = netnsFile && fs.existsSync(images.file(netnsFile))
    ? (await images.message(netnsFile)).ext_key as string | undefined : undefined;
  const net = netdev && fs.existsSync(images.file(netdev))
    ? { nsId: rootIds!.net_ns_id!, devices: await images.messages(netdev) } : undefined;
  const timens = nsFlags & NEWTIME
    ? (await images.message(timensImageName(rootIds!.time_ns_id!))) as unknown as TimensEntry : undefined;
  const seccomp = fs.existsSync(images.file(SECCOMP_IMAGE))
    ? (((await images.messages(SECCOMP_IMAGE))[0]?.seccomp_filters ?? []) as SeccompFilterEntry[]) : [];
  const streams = establishedStreams(files.values(), (name) => fs.existsSync(images.file(name)));
  const dumpLock: DumpLock = { method: lockMethodOf(inventory.network_lock_method as number | undefined), runId: runIdOf(inventory),
    hostNet: !(nsFlags & CLONE.NEWNET), conns: streams };
  return {
    procs, files, extraImage, userns, userNsOf, mntNsOf, nestedMounts, nestedNs, nestedNsOf, dumpLock, tcpStreams: streams.length > 0, file: (name) => images.file(name), nsFlags: externalNet === undefined ? nsFlags : nsFlags & ~CLONE.NEWNET,
    mounts, uts, ipc, sysv, net: externalNet === undefined ? net : undefined, externalNet, timens, seccomp, rootIds,
  };
}
