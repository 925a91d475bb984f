// The log criu writes with -o / log_file: timestamped lines, into a file or (at -v3 and up) stderr.

import fs from 'node:fs';

export class Logger {
  private out?: number;
  constructor(private verbosity: number, file?: string) {
    if (file) this.out = fs.openSync(file, 'a');
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
