// `stasis diff A B`: what changed from one checkpoint of a container to a later one — processes
// that came or went, threads, command lines, descriptors, sockets, mounts, and which memory
// pages changed, per process and per mapping, found by comparing page contents (a digest of
// each dumped page, both checkpoints streamed once, nothing unpacked).

import { createHash } from 'node:crypto';
import { imageFileName } from '../images/magic.js';
import { PAGE_SIZE, type Pagemap } from '../images/pagemap.js';
import type { Message } from '../images/wire.js';
import { openCheckpoint, streamPages, type Checkpoint } from './checkpoint-reader.js';
import { inspect, type CheckpointInfo, type ProcessNode } from './inspect.js';
import { UsageError, branch, parseCommandArgs, renderTree, runCommand, type Output, type TreeNode } from './tree-view.js';

export interface Change<T> {
  from: T;
  to: T;
}

export interface MappingPages {
  start: string;
  end: string;
  prot: string;
  pages_changed: number;
  pages_added: number;
  pages_dropped: number;
  pages_unchanged: number;
  /** Addresses (hex) of the pages whose contents differ. */
  changed: string[];
  /** Addresses (hex) of pages dumped in B only / in A only. */
  added: string[];
  dropped: string[];
}

export interface MemoryDiff {
  pages_changed: number;
  pages_added: number;
  pages_dropped: number;
  pages_unchanged: number;
  /** The mappings with any page changed, added or dropped (B's mappings, then those only A had). */
  mappings: MappingPages[];
}

export interface ProcessDiff {
  pid: number;
  command: string;
  command_changed?: Change<string>;
  cmdline?: Change<string | undefined>;
  task_state?: Change<string | undefined>;
  threads_added?: number[];
  threads_gone?: number[];
  fds_added?: string[];
  fds_gone?: string[];
  fds_changed?: Change<string>[];
  sockets_added?: string[];
  sockets_gone?: string[];
  memory?: MemoryDiff;
}

export interface CheckpointDiff {
  a: string;
  b: string;
  processes_added: { pid: number; command: string }[];
  processes_gone: { pid: number; command: string }[];
  processes: ProcessDiff[];
  mounts_added: string[];
  mounts_gone: string[];
}

function flatten(root: ProcessNode | undefined): Map<number, ProcessNode> {
  const out = new Map<number, ProcessNode>();
  const walk = (n: ProcessNode) => {
    out.set(n.pid, n);
    n.children?.forEach(walk);
  };
  if (root) walk(root);
  return out;
}

/** Keyed string lists: what is only in b, only in a, and what changed under one key. */
function compareKeyed(a: Map<string, string>, b: Map<string, string>) {
  const added = [...b].filter(([k]) => !a.has(k)).map(([k, v]) => `${k} ${v}`);
  const gone = [...a].filter(([k]) => !b.has(k)).map(([k, v]) => `${k} ${v}`);
  const changed = [...b].filter(([k, v]) => a.has(k) && a.get(k) !== v).map(([k, v]) => ({ from: `${k} ${a.get(k)}`, to: `${k} ${v}` }));
  return { added, gone, changed };
}

function fdMap(info: CheckpointInfo, pid: number): Map<string, string> {
  const f = info.file_descriptors?.find((x) => x.pid === pid);
  return new Map((f?.open_files ?? []).map((o) => [o.fd, `${o.type} ${o.path}`]));
}

function socketMap(info: CheckpointInfo, pid: number): Map<string, string> {
  const s = info.sockets?.find((x) => x.pid === pid);
  return new Map((s?.open_sockets ?? []).map((o) => {
    const d = o.data;
    const where = o.protocol === 'UNIX' ? d.address ?? '' : `${d.src}:${d.src_port} -> ${d.dst}:${d.dst_port}`;
    return [`fd ${o.fd}`, `${o.protocol} ${d.state ?? ''} ${where}`.replace(/ +/g, ' ').trim()];
  }));
}

/** A digest per dumped page, by address, for each process. */
async function pageDigests(ckpt: Checkpoint, pids: number[]): Promise<Map<number, Map<bigint, string>>> {
  const byPagesId = new Map<number, { pid: number; pagemap: Pagemap }>();
  const out = new Map<number, Map<bigint, string>>();
  for (const pid of pids) {
    const name = imageFileName('PAGEMAP', pid);
    if (!(await ckpt.images.has(name))) continue;
    const pagemap = await ckpt.images.pagemap(name);
    byPagesId.set(pagemap.pagesId, { pid, pagemap });
    out.set(pid, new Map());
  }
  // Each pages file is cut into pages as it streams; a page split across chunks waits in `partial`.
  const state = new Map<number, { partial: Buffer[]; have: number }>();
  await streamPages(ckpt, byPagesId.keys(), (id, offset, chunk) => {
    const { pid, pagemap } = byPagesId.get(id)!;
    const digests = out.get(pid)!;
    let st = state.get(id);
    if (!st) state.set(id, (st = { partial: [], have: 0 }));
    let at = 0;
    while (at < chunk.length) {
      const pageOffset = offset + at - st.have;
      const need = PAGE_SIZE - st.have;
      const piece = chunk.subarray(at, at + need);
      st.partial.push(piece);
      st.have += piece.length;
      at += piece.length;
      if (st.have < PAGE_SIZE) break;
      const vaddr = pageAddress(pagemap, pageOffset);
      if (vaddr !== undefined) {
        const h = createHash('sha1');
        for (const p of st.partial) h.update(p);
        digests.set(vaddr, h.digest('base64'));
      }
      st.partial = [];
      st.have = 0;
    }
  });
  return out;
}

/** The address of the page at `offset` of a pagemap's pages file. */
function pageAddress(pagemap: Pagemap, offset: number): bigint | undefined {
  for (const r of pagemap.runs) {
    if (r.offset === undefined) continue;
    if (offset >= r.offset && offset < r.offset + r.nrPages * PAGE_SIZE) return r.vaddr + BigInt(offset - r.offset);
  }
  return undefined;
}

const protText = (prot: number) => `${prot & 1 ? 'r' : '-'}${prot & 2 ? 'w' : '-'}${prot & 4 ? 'x' : '-'}`;

/** Compares the page digests of one process, mapping by mapping. */
function memoryDiff(a: Map<bigint, string>, b: Map<bigint, string>, vmasA: Message[], vmasB: Message[]): MemoryDiff {
  const total: MemoryDiff = { pages_changed: 0, pages_added: 0, pages_dropped: 0, pages_unchanged: 0, mappings: [] };
  const vmaOf = (vmas: Message[], addr: bigint) => vmas.find((v) => BigInt(v.start) <= addr && addr < BigInt(v.end));
  const perVma = new Map<string, MappingPages>();
  const entry = (vma: Message | undefined, addr: bigint) => {
    const start = vma ? BigInt(vma.start) : addr;
    const end = vma ? BigInt(vma.end) : addr + BigInt(PAGE_SIZE);
    const key = `${start}`;
    let m = perVma.get(key);
    if (!m) {
      m = {
        start: start.toString(16), end: end.toString(16), prot: vma ? protText(Number(vma.prot)) : '???',
        pages_changed: 0, pages_added: 0, pages_dropped: 0, pages_unchanged: 0, changed: [], added: [], dropped: [],
      };
      perVma.set(key, m);
    }
    return m;
  };
  for (const [addr, h] of b) {
    const m = entry(vmaOf(vmasB, addr), addr);
    const before = a.get(addr);
    if (before === undefined) {
      m.pages_added++;
      total.pages_added++;
      m.added.push(addr.toString(16));
    } else if (before !== h) {
      m.pages_changed++;
      total.pages_changed++;
      m.changed.push(addr.toString(16));
    } else {
      m.pages_unchanged++;
      total.pages_unchanged++;
    }
  }
  for (const addr of a.keys()) {
    if (b.has(addr)) continue;
    const m = entry(vmaOf(vmasB, addr) ?? vmaOf(vmasA, addr), addr);
    m.pages_dropped++;
    total.pages_dropped++;
    m.dropped.push(addr.toString(16));
  }
  total.mappings = [...perVma.values()]
    .filter((m) => m.pages_changed || m.pages_added || m.pages_dropped)
    .sort((x, y) => (BigInt(`0x${x.start}`) < BigInt(`0x${y.start}`) ? -1 : 1));
  return total;
}

async function vmas(ckpt: Checkpoint, pid: number): Promise<Message[]> {
  const name = imageFileName('MM', pid);
  return (await ckpt.images.has(name)) ? ((await ckpt.images.message(name)).vmas ?? []) : [];
}

/** What changed from checkpoint `a` to checkpoint `b` (archives or directories). */
export async function diffCheckpoints(a: string, b: string): Promise<CheckpointDiff> {
  const opts = { psTree: true, psTreeCmd: true, files: true, sockets: true, mounts: true };
  const [ia] = await inspect(a, opts);
  const [ib] = await inspect(b, opts);
  const pa = flatten(ia!.process_tree);
  const pb = flatten(ib!.process_tree);
  const out: CheckpointDiff = {
    a, b,
    processes_added: [...pb.values()].filter((p) => !pa.has(p.pid)).map((p) => ({ pid: p.pid, command: p.command })),
    processes_gone: [...pa.values()].filter((p) => !pb.has(p.pid)).map((p) => ({ pid: p.pid, command: p.command })),
    processes: [],
    mounts_added: [],
    mounts_gone: [],
  };
  const both = [...pb.keys()].filter((pid) => pa.has(pid));
  const images = (n: string) => /^mm-\d+\.img$/.test(n);
  const ca = await openCheckpoint(a, { images });
  const cb = await openCheckpoint(b, { images });
  const da = await pageDigests(ca, both);
  const db = await pageDigests(cb, both);
  for (const pid of both) {
    const x = pa.get(pid)!;
    const y = pb.get(pid)!;
    const d: ProcessDiff = { pid, command: y.command };
    if (x.command !== y.command) d.command_changed = { from: x.command, to: y.command };
    if (x.cmdline !== y.cmdline) d.cmdline = { from: x.cmdline, to: y.cmdline };
    if (x.task_state !== y.task_state) d.task_state = { from: x.task_state, to: y.task_state };
    const tAdded = y.threads.filter((t) => !x.threads.includes(t));
    const tGone = x.threads.filter((t) => !y.threads.includes(t));
    if (tAdded.length) d.threads_added = tAdded;
    if (tGone.length) d.threads_gone = tGone;
    const fds = compareKeyed(fdMap(ia!, pid), fdMap(ib!, pid));
    if (fds.added.length) d.fds_added = fds.added;
    if (fds.gone.length) d.fds_gone = fds.gone;
    if (fds.changed.length) d.fds_changed = fds.changed;
    const sks = compareKeyed(socketMap(ia!, pid), socketMap(ib!, pid));
    if (sks.added.length || sks.changed.length) d.sockets_added = [...sks.added, ...sks.changed.map((c) => c.to)];
    if (sks.gone.length || sks.changed.length) d.sockets_gone = [...sks.gone, ...sks.changed.map((c) => c.from)];
    if (da.has(pid) || db.has(pid)) d.memory = memoryDiff(da.get(pid) ?? new Map(), db.get(pid) ?? new Map(), await vmas(ca, pid), await vmas(cb, pid));
    out.processes.push(d);
  }
  const mount = (m: { destination: string; type: string; source: string }) => `${m.destination} ${m.type} ${m.source}`;
  const ma = new Set((ia!.mounts ?? []).map(mount));
  const mb = new Set((ib!.mounts ?? []).map(mount));
  out.mounts_added = [...mb].filter((m) => !ma.has(m));
  out.mounts_gone = [...ma].filter((m) => !mb.has(m));
  return out;
}

/** At most `n` items, then how many more. */
function some(items: string[], n = 16): TreeNode[] {
  const shown = items.slice(0, n).map((text) => ({ text }));
  return items.length > n ? [...shown, { text: `... ${items.length - n} more` }] : shown;
}

function diffTree(d: CheckpointDiff): TreeNode {
  const list = (title: string, items: string[] | undefined): TreeNode | undefined => (items?.length ? { text: `${title} (${items.length})`, children: some(items) } : undefined);
  const procs = d.processes.map((p) => {
    const m = p.memory;
    return branch(`[${p.pid}]  ${p.command}`, [
      p.command_changed ? { text: `command: ${p.command_changed.from} -> ${p.command_changed.to}` } : undefined,
      p.cmdline ? { text: `command line: ${p.cmdline.from ?? '?'} -> ${p.cmdline.to ?? '?'}` } : undefined,
      p.task_state ? { text: `state: ${p.task_state.from} -> ${p.task_state.to}` } : undefined,
      list('threads added', p.threads_added?.map(String)),
      list('threads gone', p.threads_gone?.map(String)),
      list('descriptors added', p.fds_added),
      list('descriptors gone', p.fds_gone),
      list('descriptors changed', p.fds_changed?.map((c) => `${c.from} -> ${c.to}`)),
      list('sockets added', p.sockets_added),
      list('sockets gone', p.sockets_gone),
      m
        ? {
          text: `memory: ${m.pages_changed} pages changed, ${m.pages_added} added, ${m.pages_dropped} dropped, ${m.pages_unchanged} unchanged`,
          children: m.mappings.map((v) => ({
            text: `${v.start}-${v.end} ${v.prot}: ${v.pages_changed} changed, ${v.pages_added} added, ${v.pages_dropped} dropped, ${v.pages_unchanged} unchanged`,
            children: [list('changed', v.changed), list('added', v.added), list('dropped', v.dropped)].filter((n): n is TreeNode => !!n),
          })),
        }
        : undefined,
    ]);
  });
  const children = [
    list('processes added', d.processes_added.map((p) => `[${p.pid}]  ${p.command}`)),
    list('processes gone', d.processes_gone.map((p) => `[${p.pid}]  ${p.command}`)),
    ...procs,
    list('mounts added', d.mounts_added),
    list('mounts gone', d.mounts_gone),
  ].filter((n): n is TreeNode => !!n);
  return { text: `${d.a} -> ${d.b}`, children: children.length ? children : [{ text: 'no differences' }] };
}

const usage = 'usage: stasis diff A B [--format tree|json|yaml]';

/** Runs `stasis diff ARGS`; returns the exit code. */
export async function diffCommand(args: string[], stdout: Output = process.stdout, stderr: Output = process.stderr): Promise<number> {
  return runCommand('diff', usage, stderr, async () => {
    const { values: v, positionals } = parseCommandArgs(args, { format: { type: 'string' } });
    if (positionals.length !== 2) throw new UsageError('diff wants two checkpoints');
    const format = v.format ?? 'tree';
    if (!['tree', 'json', 'yaml'].includes(format)) throw new UsageError(`--format wants tree, json or yaml, got '${format}'`);
    const d = await diffCheckpoints(positionals[0]!, positionals[1]!);
    if (format === 'json') stdout.write(`${JSON.stringify(d, null, 2)}\n`);
    else if (format === 'yaml') stdout.write((await import('yaml')).default.stringify(d));
    else stdout.write(renderTree(diffTree(d)));
  });
}
