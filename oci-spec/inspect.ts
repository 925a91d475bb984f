// `stasis inspect`: what a container checkpoint holds — the container (from config.dump,
// spec.dump, network.status, as the engine that made it wrote them), the sizes, CRIU's dump
// statistics, the process tree with command lines and environments (read from the dumped
// memory), open files, sockets and mounts. The data carries checkpointctl's JSON field names,
// so tools built on `checkpointctl inspect --format json` read ours; tree, json and yaml are
// three renderings of it.

import fsp from 'node:fs/promises';
import path from 'node:path';
import { dictWord, ipText } from '../images/crit-json.js';
import { decodeImage } from '../images/image.js';
import type { ImageSource } from '../images/image-source.js';
import { imageFileName } from '../images/magic.js';
import { enumValueName } from '../images/schema.js';
import { MOUNT_FS, describeImages, sizeText } from '../images/summary.js';
import type { Message } from '../images/wire.js';
import { readMembers } from './archive.js';
import { CheckpointError, META_FILES, loadMemory, openCheckpoint, type Checkpoint } from './checkpoint-reader.js';

export interface InspectOptions {
  psTree?: boolean;
  /** Command lines (implies psTree); read from the dumped memory. */
  psTreeCmd?: boolean;
  /** Environments (implies psTree); read from the dumped memory. */
  psTreeEnv?: boolean;
  files?: boolean;
  sockets?: boolean;
  mounts?: boolean;
  stats?: boolean;
  metadata?: boolean;
  /** Everything above. */
  all?: boolean;
  /** Root the process tree (and files, sockets) at this PID. */
  pid?: number;
  /** Beyond checkpointctl: every image summarized, as `stasis show -D` does (not part of all). */
  summary?: boolean;
}

export interface CheckpointSizeNode {
  total_size: number;
  memory_pages_size?: number;
  amd_gpu_memory_pages_size?: number;
  root_fs_diff_size?: number;
}

export interface StatsNode {
  freezing_time: number;
  frozen_time: number;
  memdump_time: number;
  memwrite_time: number;
  pages_scanned: number;
  pages_written: number;
}

export interface ProcessNode {
  pid: number;
  command: string;
  cmdline?: string;
  task_state?: string;
  environment_variables?: Record<string, string>;
  /** Beyond checkpointctl: the process's thread IDs, its group and session. */
  threads: number[];
  pgid: number;
  sid: number;
  children?: ProcessNode[];
}

export interface OpenFileNode {
  type: string;
  fd: string;
  path: string;
}

export interface FdNode {
  pid: number;
  open_files?: OpenFileNode[];
}

export interface SocketData {
  type?: string;
  address?: string;
  state?: string;
  src?: string;
  src_port?: number;
  dst?: string;
  dst_port?: number;
  send_buf?: string;
  recv_buf?: string;
}

export interface SocketNode {
  protocol?: string;
  /** Beyond checkpointctl: the descriptor it is open as. */
  fd: number;
  data: SocketData;
}

export interface SocketsNode {
  pid: number;
  open_sockets?: SocketNode[];
}

export interface MountNode {
  destination: string;
  type: string;
  source: string;
}

export interface NetworkNode {
  name: string;
  interfaces: Record<string, { ip?: string; mac?: string; gateway?: string }>;
}

export interface MetadataNode {
  pod_name?: string;
  kubernetes_namespace?: string;
  annotations?: Record<string, string>;
}

/** One checkpoint, as checkpointctl's `inspect --format json` has it (and a little more). */
export interface CheckpointInfo {
  container_name: string;
  image: string;
  id: string;
  runtime: string;
  created: string;
  checkpointed?: string;
  engine: string;
  ip?: string;
  mac?: string;
  networks?: NetworkNode[];
  checkpoint_size: CheckpointSizeNode;
  statistics?: StatsNode;
  metadata?: MetadataNode;
  process_tree?: ProcessNode;
  file_descriptors?: FdNode[];
  sockets?: SocketsNode[];
  mounts?: MountNode[];
  /** Beyond checkpointctl: the archive or directory read. */
  checkpoint_path: string;
  /** Beyond checkpointctl: the summary of every image (InspectOptions.summary). */
  images_summary?: string;
}

type Json = Record<string, unknown>;

/** What the engine wrote beside the images. */
type Meta = Pick<Checkpoint, 'path' | 'meta'>;

function parseJson(ckpt: Meta, name: string): Json | undefined {
  const bytes = ckpt.meta.get(name);
  // Podman writes an empty network.status for a container without a network.
  if (!bytes || !bytes.toString('utf8').trim()) return undefined;
  try {
    const v = JSON.parse(bytes.toString('utf8')) as unknown;
    if (v === null) return undefined;
    if (typeof v === 'object') return v as Json;
  } catch {
    // reported below
  }
  throw new CheckpointError(`${ckpt.path}: ${name} is not valid JSON`);
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** An RFC 3339 time as checkpointctl prints it: whole seconds. */
function rfc3339(v: unknown): string {
  const s = str(v);
  if (!s || s.startsWith('0001-01-01')) return '';
  return s.replace(/\.\d+(?=Z|[+-]\d\d:\d\d$)/, '');
}

/** Engine and container facts from config.dump, spec.dump and network.status (checkpointctl's rules). */
function containerFacts(ckpt: Meta): Omit<CheckpointInfo, 'checkpoint_size' | 'checkpoint_path'> & { pod?: string; namespace?: string } {
  const config = parseJson(ckpt, 'config.dump') ?? {};
  const spec = parseJson(ckpt, 'spec.dump');
  const annotations = (spec?.annotations ?? {}) as Record<string, string>;
  const base = {
    container_name: str(config.name), image: str(config.rootfsImageName), id: str(config.id), runtime: str(config.runtime),
    created: rfc3339(config.createdTime), checkpointed: rfc3339(config.checkpointedTime) || undefined, engine: '',
  };
  const manager = annotations['io.container.manager'];
  if (manager === 'libpod') {
    const info = { ...base, engine: 'Podman' };
    const networks = podmanNetworks(parseJson(ckpt, 'network.status'));
    if (!networks.length) return info;
    const first = Object.values(networks[0]!.interfaces)[0];
    return { ...info, networks, ip: first?.ip, mac: first?.mac };
  }
  if (manager === 'cri-o') {
    let name = '';
    try {
      name = str((JSON.parse(annotations['io.kubernetes.cri-o.Metadata'] ?? '{}') as Json).name);
    } catch {
      throw new CheckpointError(`${ckpt.path}: spec.dump's io.kubernetes.cri-o.Metadata is not valid JSON`);
    }
    return {
      ...base, engine: 'CRI-O', container_name: name || base.container_name,
      created: annotations['io.kubernetes.cri-o.Created'] ?? base.created, ip: annotations['io.kubernetes.cri-o.IP.0'],
      namespace: annotations['io.kubernetes.pod.namespace'], pod: annotations['io.kubernetes.pod.name'],
    };
  }
  const containerd = ckpt.meta.has('status.dump') || ckpt.meta.has('status') || 'io.kubernetes.cri.container-name' in annotations;
  if (containerd || (manager === undefined && spec && !str(config.engine))) {
    return {
      ...base, engine: 'containerd', container_name: annotations['io.kubernetes.cri.container-name'] ?? base.container_name,
      namespace: annotations['io.kubernetes.cri.sandbox-namespace'], pod: annotations['io.kubernetes.cri.sandbox-name'],
    };
  }
  // Our own archives say who made them; a bare images directory has no container at all.
  return { ...base, engine: str(config.engine) || manager || (spec ? 'unknown' : 'none') };
}

/** network.status (Podman): network → interface → subnets and MAC. */
function podmanNetworks(status: Json | undefined): NetworkNode[] {
  if (!status) return [];
  return Object.entries(status).map(([name, net]) => {
    const interfaces: NetworkNode['interfaces'] = {};
    const ifs = ((net as Json)?.interfaces ?? {}) as Record<string, Json>;
    for (const [ifname, i] of Object.entries(ifs)) {
      const subnet = ((i.subnets ?? []) as Json[])[0];
      interfaces[ifname] = {
        ip: str(subnet?.ipnet).replace(/\/\d+$/, '') || undefined,
        mac: str(i.mac_address) || undefined,
        gateway: str(subnet?.gateway) || undefined,
      };
    }
    return { name, interfaces };
  });
}

/** stats-dump's dump entry; undefined when there is none. */
function dumpStats(ckpt: Checkpoint): StatsNode | undefined {
  const bytes = ckpt.meta.get('stats-dump');
  if (!bytes) return undefined;
  const d = decodeImage(bytes, `${ckpt.path}: stats-dump`).entries[0]?.message.dump as Message | undefined;
  if (!d) throw new CheckpointError(`${ckpt.path}: stats-dump holds no dump statistics`);
  return {
    freezing_time: Number(d.freezing_time), frozen_time: Number(d.frozen_time), memdump_time: Number(d.memdump_time),
    memwrite_time: Number(d.memwrite_time), pages_scanned: Number(d.pages_scanned), pages_written: Number(d.pages_written),
  };
}

/** Bytes as checkpointctl writes them (1024-based, one decimal). */
export const byteText = sizeText;

interface Proc {
  entry: Message;
  pid: number;
  core?: Message;
}

/** pstree.img's processes, with their core (comm, state). */
async function processes(images: ImageSource): Promise<Proc[]> {
  const out: Proc[] = [];
  for (const entry of await images.messages('pstree.img')) {
    const pid = Number(entry.pid);
    const name = imageFileName('CORE', pid);
    out.push({ entry, pid, core: (await images.has(name)) ? await images.message(name) : undefined });
  }
  return out;
}

const taskState = (p: Proc) => {
  const n = Number(p.core?.tc?.task_state ?? 0);
  return dictWord('gen', 'task_state', n) ?? (n ? `state ${n}` : 'unknown');
};
const aliveOrStopped = (p: Proc) => [1, 3].includes(Number(p.core?.tc?.task_state ?? 0));

/** NUL-separated strings of a process's memory (argv or environ) between two addresses. */
async function memoryStrings(images: ImageSource, pid: number, from: unknown, to: unknown): Promise<string[] | undefined> {
  const start = BigInt(from as bigint);
  const length = Number(BigInt(to as bigint) - start);
  if (length <= 0 || length > 1 << 24) return undefined;
  try {
    const pagemap = await images.pagemap(imageFileName('PAGEMAP', pid));
    const bytes = await images.readMemory(pagemap, start, length);
    return bytes.toString('utf8').split('\0').filter((s, i, all) => s !== '' || i < all.length - 1).filter((s) => s !== '');
  } catch {
    return undefined; // not dumped (a parent dump holds it, or the stack was never touched)
  }
}

async function processTree(ckpt: Checkpoint, procs: Proc[], opts: InspectOptions): Promise<ProcessNode | undefined> {
  const images = ckpt.images;
  const wantMemory = opts.psTreeCmd || opts.psTreeEnv;
  const mms = new Map<number, Message>();
  if (wantMemory) {
    const ranges = [];
    for (const p of procs.filter(aliveOrStopped)) {
      const mmName = imageFileName('MM', p.pid);
      const pmName = imageFileName('PAGEMAP', p.pid);
      if (!(await images.has(mmName)) || !(await images.has(pmName))) continue;
      const mm = await images.message(mmName);
      mms.set(p.pid, mm);
      const pagemap = await images.pagemap(pmName);
      const span = (a: unknown, b: unknown) => ({ pagemap, vaddr: BigInt(a as bigint), length: Number(BigInt(b as bigint) - BigInt(a as bigint)) });
      if (opts.psTreeCmd) ranges.push(span(mm.mm_arg_start, mm.mm_arg_end));
      if (opts.psTreeEnv) ranges.push(span(mm.mm_env_start, mm.mm_env_end));
    }
    await loadMemory(ckpt, ranges.filter((r) => r.length > 0 && r.length <= 1 << 24));
  }
  const nodes = new Map<number, ProcessNode>();
  for (const p of procs) {
    const listed: number[] = (p.entry.threads ?? []).map(Number);
    const node: ProcessNode = {
      pid: p.pid, command: str(p.core?.tc?.comm), task_state: taskState(p),
      threads: listed.length === 1 && listed[0] === 0 ? [p.pid] : listed, pgid: Number(p.entry.pgid), sid: Number(p.entry.sid),
    };
    const mm = mms.get(p.pid);
    if (mm && opts.psTreeCmd) {
      const argv = await memoryStrings(images, p.pid, mm.mm_arg_start, mm.mm_arg_end);
      if (argv) node.cmdline = argv.join(' ');
    }
    if (mm && opts.psTreeEnv) {
      const env = await memoryStrings(images, p.pid, mm.mm_env_start, mm.mm_env_end);
      if (env) {
        node.environment_variables = {};
        for (const e of env) {
          const eq = e.indexOf('=');
          node.environment_variables[eq < 0 ? e : e.slice(0, eq)] = eq < 0 ? '' : e.slice(eq + 1);
        }
      }
    }
    nodes.set(p.pid, node);
  }
  let root: ProcessNode | undefined;
  for (const p of procs) {
    const parent = nodes.get(Number(p.entry.ppid));
    if (parent && Number(p.entry.ppid) !== p.pid) (parent.children ??= []).push(nodes.get(p.pid)!);
    else root ??= nodes.get(p.pid);
  }
  if (opts.pid !== undefined) {
    const at = nodes.get(opts.pid);
    if (!at) throw new CheckpointError(`${ckpt.path}: no process with PID ${opts.pid} in the checkpoint`);
    return at;
  }
  return root;
}

/** The path of a file description, as far as files.img tells it. */
function filePath(files: Map<number, Message>, id: number, memfds: Map<number, Message>): string {
  const f = files.get(id);
  if (!f) return `file ${id}`;
  if (f.reg) return str(f.reg.name);
  if (f.pipe) return `pipe:[${f.pipe.pipe_id}]`;
  if (f.fifo) return str(files.get(Number(f.fifo.regf_id))?.reg?.name) || `pipe:[${f.fifo.pipe_id}]`;
  if (f.usk) return `socket:[${f.usk.ino}]`;
  if (f.isk) return `socket:[${f.isk.ino}]`;
  if (f.psk || f.nlsk) return `socket:[${(f.psk ?? f.nlsk).ino ?? (f.psk ?? f.nlsk).id}]`;
  if (f.memfd) return `/memfd:${str(memfds.get(Number(f.memfd.inode_id))?.name)}`;
  if (f.tty) return str(files.get(Number(f.tty.regf_id))?.reg?.name) || 'tty';
  if (f.efd) return 'anon_inode:[eventfd]';
  if (f.epfd) return 'anon_inode:[eventpoll]';
  if (f.sgfd) return 'anon_inode:[signalfd]';
  if (f.tfd) return 'anon_inode:[timerfd]';
  if (f.ify) return 'anon_inode:inotify';
  if (f.ffy) return 'anon_inode:[fanotify]';
  if (f.pidfd) return 'anon_inode:[pidfd]';
  if (f.bpf) return 'anon_inode:bpf-map';
  if (f.nsf) return `ns:[${f.nsf.ns_id}]`;
  if (f.tunf) return '/dev/net/tun';
  return `file ${id}`;
}

interface FileTables {
  files: Map<number, Message>;
  memfds: Map<number, Message>;
}

async function fileTables(images: ImageSource): Promise<FileTables> {
  const files = new Map<number, Message>();
  for (const f of await images.messages('files.img')) files.set(Number(f.id), f);
  const memfds = new Map<number, Message>();
  for (const m of await images.messages('memfd.img')) memfds.set(Number(m.inode_id), m);
  return { files, memfds };
}

async function fdinfos(images: ImageSource, pid: number): Promise<Message[] | undefined> {
  const idsName = imageFileName('IDS', pid);
  if (!(await images.has(idsName))) return undefined;
  const ids = await images.message(idsName);
  return images.messages(imageFileName('FDINFO', ids.files_id));
}

async function openFiles(images: ImageSource, procs: Proc[], t: FileTables): Promise<FdNode[]> {
  const out: FdNode[] = [];
  for (const p of procs) {
    const fds = await fdinfos(images, p.pid);
    if (!fds) continue;
    const open: OpenFileNode[] = fds.map((fd) => ({
      type: enumValueName('fd_types', Number(fd.type)), fd: String(fd.fd), path: filePath(t.files, Number(fd.id), t.memfds),
    }));
    const fsName = imageFileName('FS', p.pid);
    if (await images.has(fsName)) {
      const fs = await images.message(fsName);
      open.push({ type: 'DIR', fd: 'cwd', path: filePath(t.files, Number(fs.cwd_id), t.memfds) });
      open.push({ type: 'DIR', fd: 'root', path: filePath(t.files, Number(fs.root_id), t.memfds) });
    }
    out.push(open.length ? { pid: p.pid, open_files: open } : { pid: p.pid });
  }
  return out;
}

const skWord = (field: string, n: unknown) => dictWord('sk', field, Number(n)) ?? String(n);

async function openSockets(images: ImageSource, procs: Proc[], t: FileTables): Promise<SocketsNode[]> {
  const out: SocketsNode[] = [];
  for (const p of procs) {
    const fds = await fdinfos(images, p.pid);
    const open: SocketNode[] = [];
    for (const fd of fds ?? []) {
      const f = t.files.get(Number(fd.id));
      const bufs = (opts: Message | undefined) => ({
        send_buf: opts ? byteText(Number(opts.so_sndbuf)) : undefined, recv_buf: opts ? byteText(Number(opts.so_rcvbuf)) : undefined,
      });
      if (f?.isk) {
        const proto = skWord('proto', f.isk.proto);
        open.push({
          protocol: proto, fd: Number(fd.fd),
          data: {
            type: proto, state: skWord('state', f.isk.state),
            src: ipText(f.isk.src_addr ?? []) ?? '', src_port: Number(f.isk.src_port),
            dst: ipText(f.isk.dst_addr ?? []) ?? '', dst_port: Number(f.isk.dst_port), ...bufs(f.isk.opts),
          },
        });
      } else if (f?.usk) {
        const name = Buffer.from(f.usk.name ?? []);
        // An abstract name starts with a NUL: shown with @, as ss and netstat do.
        // (A path name ends at its first NUL: the name kept may be the whole sun_path bound.)
        const address = name.length && name[0] === 0
          ? `@${name.subarray(1).toString('latin1')}`
          : name.subarray(0, name.includes(0) ? name.indexOf(0) : name.length).toString('utf8');
        open.push({
          protocol: 'UNIX', fd: Number(fd.fd),
          data: { type: 'UNIX', address, state: skWord('state', f.usk.state), ...bufs(f.usk.opts) },
        });
      } else if (f?.psk || f?.nlsk) {
        const s = f.psk ?? f.nlsk;
        open.push({ protocol: f.psk ? 'PACKET' : 'NETLINK', fd: Number(fd.fd), data: { ...bufs(s.opts) } });
      }
    }
    if (open.length) out.push({ pid: p.pid, open_sockets: open });
  }
  return out;
}

/** The spec's mounts (as checkpointctl shows them); without a spec, the dumped mount namespace's. */
async function mountList(ckpt: Checkpoint): Promise<MountNode[]> {
  const spec = parseJson(ckpt, 'spec.dump');
  if (spec) {
    return ((spec.mounts ?? []) as Json[]).map((m) => ({ destination: str(m.destination), type: str(m.type), source: str(m.source) }));
  }
  const out: MountNode[] = [];
  for (const name of await ckpt.images.names()) {
    if (!name.startsWith('mountpoints-')) continue;
    for (const m of await ckpt.images.messages(name)) {
      out.push({ destination: str(m.mountpoint), type: MOUNT_FS[Number(m.fstype)] ?? `fstype ${m.fstype}`, source: str(m.source) });
    }
  }
  return out;
}

function effective(opts: InspectOptions): InspectOptions {
  const o = opts.all ? { ...opts, psTree: true, psTreeCmd: true, psTreeEnv: true, files: true, sockets: true, mounts: true, stats: true, metadata: true } : { ...opts };
  if (o.psTreeCmd || o.psTreeEnv) o.psTree = true;
  return o;
}

/** Which images the options need read. */
function imagesWanted(o: InspectOptions): (name: string) => boolean {
  return (n) => !!o.summary || (!!(o.files || o.sockets) && (/^(ids|fdinfo|fs)-\d+\.img$/.test(n) || n === 'files.img' || n === 'memfd.img'))
    || (!!(o.psTreeCmd || o.psTreeEnv) && /^mm-\d+\.img$/.test(n))
    || (!!o.mounts && n.startsWith('mountpoints-'));
}

/** Inspect one checkpoint. */
async function inspectOne(where: string, options: InspectOptions): Promise<CheckpointInfo> {
  const o = effective(options);
  const ckpt = await openCheckpoint(where, { images: imagesWanted(o) });
  const { pod, namespace, ...facts } = containerFacts(ckpt);
  const s = ckpt.sizes;
  const info: CheckpointInfo = {
    ...facts,
    checkpoint_size: {
      total_size: s.total,
      ...(s.pages ? { memory_pages_size: s.pages } : {}),
      ...(s.amdgpuPages ? { amd_gpu_memory_pages_size: s.amdgpuPages } : {}),
      ...(s.rootfsDiff ? { root_fs_diff_size: s.rootfsDiff } : {}),
    },
    checkpoint_path: where,
  };
  if (o.stats) {
    const stats = dumpStats(ckpt);
    // Asked for, their absence is an error; as part of --all, they are left out.
    if (!stats && !options.all) throw new CheckpointError(`${where}: no stats-dump (the dump's statistics) in the checkpoint`);
    if (stats) info.statistics = stats;
  }
  if (o.metadata) {
    const annotations = (parseJson(ckpt, 'spec.dump')?.annotations ?? undefined) as Record<string, string> | undefined;
    info.metadata = {
      ...(pod ? { pod_name: pod } : {}), ...(namespace ? { kubernetes_namespace: namespace } : {}),
      ...(annotations && Object.keys(annotations).length ? { annotations } : {}),
    };
  }
  let procs = await processes(ckpt.images);
  if (o.psTree) info.process_tree = await processTree(ckpt, procs, o);
  if (o.pid !== undefined) {
    // Files and sockets of that process and those below it.
    const below = new Set<number>();
    const walk = (n: ProcessNode) => {
      below.add(n.pid);
      n.children?.forEach(walk);
    };
    const tree = info.process_tree ?? (await processTree(ckpt, procs, { pid: o.pid }));
    if (tree) walk(tree);
    procs = procs.filter((p) => below.has(p.pid));
  }
  if (o.files || o.sockets) {
    const tables = await fileTables(ckpt.images);
    if (o.files) info.file_descriptors = await openFiles(ckpt.images, procs, tables);
    if (o.sockets) info.sockets = await openSockets(ckpt.images, procs, tables);
  }
  if (o.mounts) info.mounts = await mountList(ckpt);
  if (o.summary) info.images_summary = await describeImages(ckpt.images, `Images of ${where}`, where);
  return info;
}

/**
 * What the checkpoints at `paths` (archives of any layout and compression, unpacked archives,
 * plain images directories) hold, as checkpointctl's `inspect --format json` has it. Only what
 * the options ask for is read: without psTreeCmd/psTreeEnv no pages are read at all.
 */
export async function inspect(paths: string | string[], options: InspectOptions = {}): Promise<CheckpointInfo[]> {
  const out: CheckpointInfo[] = [];
  for (const p of Array.isArray(paths) ? paths : [paths]) out.push(await inspectOne(p, options));
  return out;
}

// --- list ---------------------------------------------------------------------------------------

/** The kubelet's checkpoint directory. */
export const KUBELET_CHECKPOINTS = '/var/lib/kubelet/checkpoints';

export interface ListedCheckpoint {
  namespace: string;
  pod: string;
  container: string;
  engine: string;
  checkpointed: string;
  checkpoint_name: string;
  path: string;
  size: number;
}

/** config.dump and spec.dump of an archive only, stopping once both are read. */
async function archiveMeta(archive: string): Promise<Meta> {
  const meta = new Map<string, Buffer>();
  const stop = new Error('enough');
  try {
    for await (const m of readMembers(archive, (name, _size, type) => {
      if (meta.has('config.dump') && meta.has('spec.dump')) throw stop;
      return type === 'file' && (META_FILES as readonly string[]).includes(name);
    })) meta.set(m.name, m.data);
  } catch (e) {
    if (e !== stop) throw e;
  }
  return { path: archive, meta };
}

/** The checkpoint archives (checkpoint-*) in `dirs`, as `checkpointctl list` shows them. */
export async function listCheckpoints(dirs: string[] = [KUBELET_CHECKPOINTS]): Promise<ListedCheckpoint[]> {
  const out: ListedCheckpoint[] = [];
  for (const dir of dirs) {
    const names = await fsp.readdir(dir).catch((e: NodeJS.ErrnoException) => {
      throw new CheckpointError(`${dir}: ${e.code === 'ENOENT' ? 'no such directory' : e.message}`);
    });
    for (const name of names.filter((n) => n.startsWith('checkpoint-')).sort()) {
      const file = path.join(dir, name);
      const st = await fsp.stat(file);
      if (!st.isFile()) continue;
      const ckpt = await archiveMeta(file);
      const f = containerFacts(ckpt);
      out.push({
        namespace: f.namespace ?? '', pod: f.pod ?? '', container: f.container_name, engine: f.engine,
        checkpointed: f.checkpointed ?? st.mtime.toISOString().replace(/\.\d+Z$/, 'Z'), checkpoint_name: name, path: file, size: st.size,
      });
    }
  }
  return out;
}
