// The log criu writes with -o / log_file: timestamped lines, into a file or (at -v3 and up) stderr.

import fs from 'node:fs';
import { PRIVATE_FILE_MODE, createPrivateFileSync } from '../images/private-file.js';

const { O_WRONLY, O_APPEND, O_CREAT, O_NONBLOCK } = fs.constants;

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

/**
 * Opens the log to append to. A log says what was dumped from where, so a file is made as the
 * images are (images/private-file.ts: 0600, a new file replacing an earlier log, as criu truncates
 * it). A symbolic link is followed only when it is ours or root's (/dev/stderr), as the kernel's
 * protected_symlinks has it in shared directories: one planted by another user would have stasis
 * write over its target. A device or a FIFO (/dev/null, a pipe) is written to as it is.
 */
function openLog(file: string): number {
  let st: fs.Stats | undefined = statOf(file, fs.lstatSync);
  if (st?.isSymbolicLink()) {
    if (st.uid !== process.geteuid!() && st.uid !== 0) {
      throw new Error(`a symbolic link of user ${st.uid}: refusing to write the log through it`);
    }
    st = statOf(file, fs.statSync);
    if (!st || st.isFile()) return fs.openSync(file, O_WRONLY | O_APPEND | O_CREAT, PRIVATE_FILE_MODE);
  } else if (!st || st.isFile()) {
    return createPrivateFileSync(file, O_APPEND);
  }
  if (st.isDirectory()) throw new Error('a directory');
  // A FIFO opened for writing waits for a reader: asked without waiting first (ENXIO: none).
  if (st.isFIFO()) fs.closeSync(fs.openSync(file, O_WRONLY | O_NONBLOCK));
  return fs.openSync(file, O_WRONLY | O_APPEND);
}

function statOf(file: string, how: (f: string) => fs.Stats): fs.Stats | undefined {
  try {
    return how(file);
  } catch (e) {
    if (code(e) === 'ENOENT') return undefined;
    throw e;
  }
}

export class Logger {
  private out?: number;
  constructor(private verbosity: number, file?: string) {
    if (!file) return;
    try {
      this.out = openLog(file);
    } catch (e) {
      throw new Error(`log file ${file}: ${code(e) ?? (e as Error).message.replace(`${file}: `, '')}`);
    }
  }
  /** Messages at level <= verbosity go to the log file (or stderr with -v3 and up). */
  log(level: number, msg: string): void {
    const line = `(${(performance.now() / 1000).toFixed(6)}) ${msg}\n`;
    if (this.out !== undefined) fs.writeSync(this.out, line);
    else if (level <= this.verbosity && this.verbosity >= 3) process.stderr.write(line);
  }
  close(): void {
    if (this.out !== undefined) fs.closeSync(this.out);
    this.out = undefined;
  }
}
