// Reading /proc files, and the one error type every parser in sys/proc/ throws.
// Reads are synchronous: the parsers run while the target is frozen, and a /proc file is
// generated in one go by the kernel anyway.
import fs from 'node:fs';

/** A process id, or `self` / `thread-self` (as seen by this Node process). */
export type ProcPid = number | 'self' | 'thread-self';

/**
 * Why reading or parsing a /proc file failed.
 * `code` is the errno name (`ESRCH` when the process is gone, `ENOENT`, `EACCES`...) or
 * `EMALFORMED` when the content did not parse; `line` is 1-based when known.
 */
export class ProcError extends Error {
  readonly path: string;
  readonly code: string;
  readonly line: number | undefined;
  constructor(path: string, code: string, detail: string, line?: number) {
    super(`${path}${line === undefined ? '' : `:${line}`}: ${detail}`);
    this.name = 'ProcError';
    this.path = path;
    this.code = code;
    this.line = line;
  }
}

/** `/proc/PID/parts...` */
export function procPath(pid: ProcPid, ...parts: (string | number)[]): string {
  let path = `/proc/${pid}`;
  for (let i = 0; i < parts.length; i++) path += `/${parts[i]}`;
  return path;
}

/** The task directories a path lies under (`/proc/PID`, `/proc/PID/task/TID`). */
function taskDirs(path: string): string[] {
  const m = /^(\/proc\/[^/]+)(\/task\/[^/]+)?/.exec(path);
  if (!m) return [];
  return m[2] ? [m[1]!, m[1]! + m[2]] : [m[1]!];
}

/** Turns an fs error on `path` into a ProcError saying whether the process or the file is missing. */
export function procFsError(path: string, err: unknown): ProcError {
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? 'EIO';
  if (code === 'ESRCH') return new ProcError(path, 'ESRCH', 'no such process');
  if (code === 'ENOENT') {
    // A task that exits while we look leaves ENOENT on its files; its directory goes with it.
    if (taskDirs(path).some((dir) => dir === path || !fs.existsSync(dir))) {
      return new ProcError(path, 'ESRCH', 'no such process');
    }
    return new ProcError(path, 'ENOENT', 'no such file');
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new ProcError(path, code, `permission denied (${code}); reading it needs ptrace access to the task`);
  }
  return new ProcError(path, code, `${code}: ${e?.message ?? String(err)}`);
}

/** The whole file as text. */
export function readProcText(path: string): string {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch (err) {
    throw procFsError(path, err);
  }
}

/** The whole file as bytes (auxv, cmdline, environ: binary or NUL-separated). */
export function readProcBytes(path: string): Buffer {
  try {
    return fs.readFileSync(path);
  } catch (err) {
    throw procFsError(path, err);
  }
}

/** The target of a /proc symlink (`/proc/PID/fd/N`, `cwd`, `ns/net`...). */
export function readProcLink(path: string): string {
  try {
    return fs.readlinkSync(path);
  } catch (err) {
    throw procFsError(path, err);
  }
}

/** Directory entries (`fd/`, `task/`, `ns/`). */
export function readProcDir(path: string): string[] {
  try {
    return fs.readdirSync(path);
  } catch (err) {
    throw procFsError(path, err);
  }
}

/** A parse failure at `line` (1-based) of `path`, quoting the offending text. */
export function malformed(path: string, line: number | undefined, why: string, text?: string): ProcError {
  const quoted = text === undefined ? '' : `: ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}...` : text)}`;
  return new ProcError(path, 'EMALFORMED', `${why}${quoted}`, line);
}

/** Lines of a text file without the final empty one. */
export function lines(text: string): string[] {
  const out = text.split('\n');
  if (out.length > 0 && out[out.length - 1] === '') out.pop();
  return out;
}

// Number parsing that refuses garbage instead of returning NaN. `where` is [path, line, text],
// or what makes it when an error needs it (a parser that reads many fields spares building each).
type Where = readonly [path: string, line: number | undefined, text: string] | (() => readonly [string, number | undefined, string]);

function bad(where: Where, why: string): ProcError {
  const [path, line, text] = typeof where === 'function' ? where() : where;
  return malformed(path, line, why, text);
}

const DEC = /^-?\d+$/;
const UDEC = /^\d+$/;
const HEX = /^(?:0x)?[0-9a-fA-F]+$/;
const OCT = /^[0-7]+$/;

/** A decimal integer that fits a JS number exactly. */
export function dec(s: string, what: string, where: Where): number {
  if (!DEC.test(s)) throw bad(where, `${what} is not a decimal number (${JSON.stringify(s)})`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw bad(where, `${what} ${s} does not fit 53 bits`);
  return n;
}

/** A decimal integer of any size (u64 counters, addresses printed in decimal). */
export function decBig(s: string, what: string, where: Where): bigint {
  if (!DEC.test(s)) throw bad(where, `${what} is not a decimal number (${JSON.stringify(s)})`);
  return BigInt(s);
}

/** An unsigned decimal that fits a JS number exactly. */
export function udec(s: string, what: string, where: Where): number {
  if (!UDEC.test(s)) throw bad(where, `${what} is not an unsigned decimal (${JSON.stringify(s)})`);
  return dec(s, what, where);
}

/** A hex integer (with or without 0x) that fits a JS number exactly. */
export function hex(s: string, what: string, where: Where): number {
  if (!HEX.test(s)) throw bad(where, `${what} is not a hex number (${JSON.stringify(s)})`);
  const n = parseInt(s.replace(/^0x/, ''), 16);
  if (!Number.isSafeInteger(n)) throw bad(where, `${what} ${s} does not fit 53 bits`);
  return n;
}

/** A hex integer of any size (addresses, signal and capability masks). */
export function hexBig(s: string, what: string, where: Where): bigint {
  if (!HEX.test(s)) throw bad(where, `${what} is not a hex number (${JSON.stringify(s)})`);
  return BigInt(s.startsWith('0x') ? s : `0x${s}`);
}

/** An octal integer (open flags in fdinfo, timerfd settime flags). */
export function oct(s: string, what: string, where: Where): number {
  if (!OCT.test(s)) throw bad(where, `${what} is not an octal number (${JSON.stringify(s)})`);
  return parseInt(s, 8);
}

/**
 * Undoes the kernel's octal escaping (`\040` for a space, `\011`, `\012`, `\134` for a
 * backslash) as done by mangle_path()/seq_escape() in mountinfo and maps.
 */
export function unescapeOctal(s: string): string {
  return s.includes('\\') ? s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) : s;
}

/** Splits a kernel dev_t as printed in fdinfo/ (`sdev:` — MINORBITS = 20) into major:minor. */
export function kernelDev(dev: number): { major: number; minor: number } {
  return { major: Math.floor(dev / 0x100000), minor: dev % 0x100000 };
}
