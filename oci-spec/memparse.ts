// `stasis memparse`: a process's memory as it was dumped, read from the pages of a checkpoint
// without unpacking it. Without -p: each process's dumped memory size (from the pagemaps, no
// pages read). With -p: the memory as a hex dump (to stdout, or to a file with -o), or searched
// for a string or a regular expression (--search, --search-regex) with -c bytes of context.
// The pages are streamed: memory stays small whatever the size of the process.

import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { imageFileName } from '../images/magic.js';
import { PAGE_SIZE, PE_PRESENT, type PageRun, type Pagemap } from '../images/pagemap.js';
import { CheckpointError, openCheckpoint, streamPages, type Checkpoint } from './checkpoint-reader.js';
import { byteText } from './inspect.js';
import { UsageError, intOption, parseCommandArgs, runCommand, type Output } from './tree-view.js';

export interface ProcessMemorySize {
  pid: number;
  command: string;
  /** Bytes of memory dumped into the pages files (present pages). */
  memory_size: number;
}

/** Each process's dumped memory, in pstree order; no pages are read. */
export async function memorySizes(where: string): Promise<ProcessMemorySize[]> {
  const ckpt = await openCheckpoint(where);
  const out: ProcessMemorySize[] = [];
  for (const e of await ckpt.images.messages('pstree.img')) {
    const pid = Number(e.pid);
    const core = imageFileName('CORE', pid);
    const command = (await ckpt.images.has(core)) ? String((await ckpt.images.message(core)).tc?.comm ?? '') : '';
    const pm = imageFileName('PAGEMAP', pid);
    const runs = (await ckpt.images.has(pm)) ? (await ckpt.images.pagemap(pm)).runs : [];
    out.push({ pid, command, memory_size: runs.reduce((s, r) => s + (r.flags & PE_PRESENT ? r.nrPages * PAGE_SIZE : 0), 0) });
  }
  return out;
}

/** Called with a process's memory in address order: `vaddr` is where `bytes` sit. */
export type MemoryConsumer = (vaddr: bigint, bytes: Buffer) => void | Promise<void>;

/** The pagemap of process `pid` of an opened checkpoint; a clear error if it has none. */
export async function processPagemap(ckpt: Checkpoint, pid: number): Promise<Pagemap> {
  const pstree = await ckpt.images.messages('pstree.img');
  if (!pstree.some((e) => Number(e.pid) === pid)) throw new CheckpointError(`${ckpt.path}: no process with PID ${pid} in the checkpoint`);
  const name = imageFileName('PAGEMAP', pid);
  if (!(await ckpt.images.has(name))) throw new CheckpointError(`${ckpt.path}: process ${pid} has no memory in the checkpoint (no ${name})`);
  return ckpt.images.pagemap(name);
}

/**
 * Streams the dumped memory of one process (its pagemap's present runs, in file order, which
 * is address order) through `consume`.
 */
export async function streamProcessMemory(ckpt: Checkpoint, pagemap: Pagemap, consume: MemoryConsumer): Promise<void> {
  const runs = pagemap.runs.filter((r): r is PageRun & { offset: number } => r.offset !== undefined);
  let i = 0;
  await streamPages(ckpt, [pagemap.pagesId], async (_id, offset, chunk) => {
    let at = offset;
    const end = offset + chunk.length;
    while (at < end && i < runs.length) {
      const run = runs[i]!;
      const runEnd = run.offset + run.nrPages * PAGE_SIZE;
      if (at >= runEnd) {
        i++;
        continue;
      }
      if (at < run.offset) {
        at = Math.min(end, run.offset);
        continue;
      }
      const n = Math.min(end, runEnd) - at;
      await consume(run.vaddr + BigInt(at - run.offset), chunk.subarray(at - offset, at - offset + n));
      at += n;
    }
  });
}

export interface MemoryMatch {
  /** Where the match starts. */
  address: bigint;
  /** The matched bytes. */
  match: Buffer;
  /** Up to `context` bytes each side, with the match. */
  context: Buffer;
  /** Where `context` starts. */
  contextAddress: bigint;
}

/** The longest match (and context) a search keeps track of across chunk boundaries. */
const SEARCH_WINDOW = 64 << 10;

/**
 * Finds `pattern` in memory fed piece by piece in address order. A match may span pieces as
 * long as they are contiguous in memory; matches longer than SEARCH_WINDOW are not found.
 */
export class MemorySearch {
  private carry = Buffer.alloc(0);
  private carryAt = 0n;
  private nextAllowed = 0n;
  readonly matches: MemoryMatch[] = [];

  constructor(private readonly pattern: RegExp, private readonly context: number) {}

  feed(vaddr: bigint, bytes: Buffer): void {
    if (this.carry.length && vaddr !== this.carryAt + BigInt(this.carry.length)) this.finish();
    if (!this.carry.length) this.carryAt = vaddr;
    this.scan(Buffer.concat([this.carry, bytes]), false);
  }

  /** The end of a contiguous stretch: matches near it are reported with the context there is. */
  finish(): void {
    if (this.carry.length) this.scan(this.carry, true);
    this.carry = Buffer.alloc(0);
  }

  private scan(buf: Buffer, final: boolean): void {
    const base = this.carryAt;
    const text = buf.toString('latin1');
    const re = new RegExp(this.pattern.source, this.pattern.flags.includes('g') ? this.pattern.flags : `${this.pattern.flags}g`);
    let deferred: number | undefined;
    for (const m of text.matchAll(re)) {
      const idx = m.index!;
      const len = m[0].length;
      if (!final && idx + len + this.context > buf.length) {
        deferred = idx;
        break;
      }
      const address = base + BigInt(idx);
      if (address < this.nextAllowed) continue;
      const from = Math.max(0, idx - this.context);
      this.matches.push({
        address, match: Buffer.from(buf.subarray(idx, idx + len)),
        context: Buffer.from(buf.subarray(from, Math.min(buf.length, idx + len + this.context))), contextAddress: base + BigInt(from),
      });
      this.nextAllowed = address + BigInt(Math.max(1, len));
      if (len === 0) re.lastIndex++;
    }
    if (final) return;
    let keepFrom = Math.max(0, buf.length - (SEARCH_WINDOW + 2 * this.context));
    if (deferred !== undefined) keepFrom = Math.min(keepFrom, Math.max(0, deferred - this.context));
    this.carry = Buffer.from(buf.subarray(keepFrom));
    this.carryAt = base + BigInt(keepFrom);
  }
}

/** A pattern for a literal string (matched as its UTF-8 bytes). */
export function literalPattern(s: string): RegExp {
  const latin1 = Buffer.from(s, 'utf8').toString('latin1');
  return new RegExp(latin1.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g');
}

/** Every match of `pattern` in the dumped memory of process `pid`. */
export async function searchMemory(where: string, pid: number, pattern: RegExp, context = 0): Promise<MemoryMatch[]> {
  const ckpt = await openCheckpoint(where);
  const search = new MemorySearch(pattern, context);
  await streamProcessMemory(ckpt, await processPagemap(ckpt, pid), (vaddr, bytes) => search.feed(vaddr, bytes));
  search.finish();
  return search.matches;
}

const HEX_ROW = 16;

/** Hex dump rows (address, bytes, ASCII) of `bytes` at `vaddr`; `compact` folds repeated rows into "*". */
class HexDumper {
  private last = '';
  private folded = false;

  constructor(private readonly compact: boolean, private readonly write: (s: string) => void | Promise<void>) {}

  private pending = Buffer.alloc(0);
  private pendingAt = 0n;

  /** Rows for `bytes`; a partial last row waits for the bytes that follow it. */
  async rows(vaddr: bigint, bytes: Buffer): Promise<void> {
    if (this.pending.length && vaddr === this.pendingAt + BigInt(this.pending.length)) {
      bytes = Buffer.concat([this.pending, bytes]);
      vaddr = this.pendingAt;
    } else {
      await this.flush();
    }
    const whole = bytes.length - (bytes.length % HEX_ROW);
    this.pending = Buffer.from(bytes.subarray(whole));
    this.pendingAt = vaddr + BigInt(whole);
    await this.emit(vaddr, bytes.subarray(0, whole));
  }

  /** The partial row left, if any. */
  async flush(): Promise<void> {
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    await this.emit(this.pendingAt, rest);
  }

  private async emit(vaddr: bigint, bytes: Buffer): Promise<void> {
    let out = '';
    for (let i = 0; i < bytes.length; i += HEX_ROW) {
      const row = bytes.subarray(i, i + HEX_ROW);
      const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ').padEnd(HEX_ROW * 3 - 1);
      const ascii = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
      const body = `${hex}  |${ascii}|`;
      if (this.compact && body === this.last) {
        if (!this.folded) out += '*\n';
        this.folded = true;
      } else {
        out += `${(vaddr + BigInt(i)).toString(16).padStart(16, '0')}  ${body}\n`;
        this.folded = false;
      }
      this.last = body;
    }
    if (out) await this.write(out);
  }
}

async function writeTo(stream: WriteStream, s: string): Promise<void> {
  if (!stream.write(s)) await once(stream, 'drain');
}

const usage = 'usage: stasis memparse ARCHIVE|DIR [-p PID] [--search STR | --search-regex RE] [-c N] [-o FILE]';

function printableBytes(b: Buffer): string {
  return Array.from(b, (c) => (c >= 32 && c < 127 ? String.fromCharCode(c) : '.')).join('');
}

/** Runs `stasis memparse ARGS`; returns the exit code. */
export async function memparseCommand(args: string[], stdout: Output = process.stdout, stderr: Output = process.stderr): Promise<number> {
  return runCommand('memparse', usage, stderr, async () => {
    const { values: v, positionals } = parseCommandArgs(args, {
      pid: { type: 'string', short: 'p' }, search: { type: 'string', short: 's' }, 'search-regex': { type: 'string', short: 'r' },
      context: { type: 'string', short: 'c' }, output: { type: 'string', short: 'o' },
    });
    if (positionals.length !== 1) throw new UsageError(positionals.length ? 'one checkpoint at a time' : 'no checkpoint given');
    const where = positionals[0]!;
    const pid = intOption('pid', v.pid, 1);
    const context = intOption('context', v.context) ?? 0;
    if (v.search !== undefined && v['search-regex'] !== undefined) throw new UsageError('--search and --search-regex exclude each other');
    if (pid === undefined) {
      if (v.search !== undefined || v['search-regex'] !== undefined || v.output !== undefined) throw new UsageError('searching or writing memory needs -p PID');
      const sizes = await memorySizes(where);
      const rows = sizes.map((s) => [String(s.pid), s.command, byteText(s.memory_size)]);
      const head = ['PID', 'Process name', 'Memory size'];
      const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd();
      stdout.write(`\nDisplaying processes memory sizes from ${where}\n\n${[line(head), ...rows.map(line)].join('\n')}\n`);
      return;
    }
    if (v.search !== undefined || v['search-regex'] !== undefined) {
      let pattern: RegExp;
      try {
        pattern = v.search !== undefined ? literalPattern(v.search) : new RegExp(v['search-regex']!, 'g');
      } catch (e) {
        throw new UsageError(`--search-regex: ${(e as Error).message}`);
      }
      if (v.search === '') throw new UsageError('--search wants a non-empty string');
      const matches = await searchMemory(where, pid, pattern, context);
      const shown = v.search ?? v['search-regex'];
      stdout.write(`Searching process ${pid}'s memory in ${where} for ${JSON.stringify(shown)}: ${matches.length} match${matches.length === 1 ? '' : 'es'}\n`);
      for (const m of matches) {
        stdout.write(`0x${m.address.toString(16).padStart(16, '0')}  ${printableBytes(m.context)}\n`);
      }
      return;
    }
    const ckpt = await openCheckpoint(where);
    const pagemap = await processPagemap(ckpt, pid);
    const header = 'Address           Hexadecimal                                      ASCII\n' + `${'-'.repeat(85)}\n`;
    if (v.output !== undefined) {
      const file = createWriteStream(v.output, { flags: 'w', mode: 0o600 });
      await once(file, 'open');
      try {
        stdout.write(`Writing the memory of process ${pid} from ${where} to ${v.output}\n`);
        await writeTo(file, header);
        const dumper = new HexDumper(false, (s) => writeTo(file, s));
        await streamProcessMemory(ckpt, pagemap, (vaddr, bytes) => dumper.rows(vaddr, bytes));
        await dumper.flush();
      } finally {
        file.end();
        await once(file, 'close');
      }
      return;
    }
    stdout.write(`\nDisplaying the memory of process ${pid} from ${where}\n\n${header}`);
    const dumper = new HexDumper(true, (s) => void stdout.write(s));
    await streamProcessMemory(ckpt, pagemap, (vaddr, bytes) => dumper.rows(vaddr, bytes));
    await dumper.flush();
  });
}
