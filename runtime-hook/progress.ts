// A progress line for long dumps and restores, on a terminal only: it appears once an operation
// has run for half a second, is redrawn at most ten times a second, and is erased at the end.
// A process tree shows one process at a time ("memory of PID").

/** How long an operation runs before its line appears (STASIS_PROGRESS_DELAY_MS overrides). */
const SHOW_AFTER_MS = Number(process.env.STASIS_PROGRESS_DELAY_MS ?? 500);
const REDRAW_MS = 100;
const MIB = 1 << 20;

export class Progress {
  private started = performance.now();
  private drawn = 0;
  private shown = false;

  constructor(private readonly action: string, private readonly out: NodeJS.WriteStream = process.stderr) {}

  /** The callback dump()/restore() take; a no-op when stderr is not a terminal. */
  get callback(): ((what: string, done: number, total: number) => void) | undefined {
    if (!this.out.isTTY) return undefined;
    return (what, done, total) => {
      const now = performance.now();
      if (now - this.started < SHOW_AFTER_MS || (now - this.drawn < REDRAW_MS && done < total)) return;
      this.drawn = now;
      this.shown = true;
      const pct = total ? Math.floor((done / total) * 100) : 100;
      this.out.write(`\r\x1b[Kstasis ${this.action}: ${what}: ${(done / MIB).toFixed(0)} of ${(total / MIB).toFixed(0)} MiB (${pct}%)`);
    };
  }

  /** Erase the line, if one was drawn. */
  end(): void {
    if (this.shown) this.out.write('\r\x1b[K');
    this.shown = false;
  }
}
