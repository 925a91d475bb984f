// criu's command-line grammar: `criu ACTION [options]`, long options with `--opt value` or
// `--opt=value`, short ones with a separate or attached value (-t 123, -t123, -v4). Unknown
// options are errors, as with criu, so a caller learns at once that something is not supported.

export interface OptionSpec {
  long: string;
  short?: string;
  /** Takes a value. */
  value?: boolean;
  /** May be given several times (values collected). */
  repeat?: boolean;
  /** Accepted for compatibility; does nothing (yet). */
  ignored?: boolean;
}

export interface Parsed {
  action?: string;
  values: Map<string, string[]>;
  flags: Set<string>;
  verbosity: number;
  positional: string[];
}

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[], specs: readonly OptionSpec[]): Parsed {
  const byLong = new Map(specs.map((s) => [s.long, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const out: Parsed = { values: new Map(), flags: new Set(), verbosity: 2, positional: [] };
  const take = (spec: OptionSpec, inline: string | undefined, i: number): number => {
    if (!spec.value) {
      if (inline !== undefined) throw new UsageError(`option --${spec.long} takes no value`);
      out.flags.add(spec.long);
      return i;
    }
    let v = inline;
    if (v === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`option --${spec.long} needs a value`);
      v = argv[++i]!;
    }
    const list = out.values.get(spec.long) ?? [];
    if (list.length && !spec.repeat) list.length = 0;
    list.push(v);
    out.values.set(spec.long, list);
    return i;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const spec = byLong.get(name);
      if (!spec) throw new UsageError(`unknown option --${name}`);
      i = take(spec, eq < 0 ? undefined : a.slice(eq + 1), i);
    } else if (/^-v\d*$/.test(a)) {
      out.verbosity = a === '-v' ? out.verbosity + 1 : Number(a.slice(2));
    } else if (a.startsWith('-') && a.length > 1) {
      const spec = byShort.get(a[1]!);
      if (!spec) throw new UsageError(`unknown option ${a}`);
      i = take(spec, a.length > 2 ? a.slice(2) : undefined, i);
    } else if (out.action === undefined) {
      out.action = a;
    } else {
      out.positional.push(a);
    }
  }
  return out;
}

/** `net[INODE]:NAME` (criu's external network namespace) → [INODE, NAME]; undefined for other kinds. */
export function parseExternalNet(s: string): [number, string] | undefined {
  const m = /^net\[(\d+)\]:(.+)$/.exec(s);
  return m ? [Number(m[1]), m[2]!] : undefined;
}

/** The namespace file criu's join_ns names: a path, or a PID whose namespace of `kind` it is. */
export function joinNsFile(kind: string, fileOrPid: string): string {
  return /^\d+$/.test(fileOrPid) ? `/proc/${fileOrPid}/ns/${kind}` : fileOrPid;
}

/** `fd[N]:KEY` → [KEY, N] (criu's --inherit-fd). */
export function parseInheritFd(s: string): [string, number] {
  const m = /^fd\[(\d+)\]:(.+)$/.exec(s);
  if (!m) throw new UsageError(`--inherit-fd wants fd[N]:KEY, got '${s}'`);
  return [m[2]!, Number(m[1])];
}
