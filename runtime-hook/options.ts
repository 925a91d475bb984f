// criu's command-line grammar: `criu ACTION [options]`, long options with `--opt value` or
// `--opt=value`, short ones with a separate or attached value (-t 123, -t123), flags clustered
// (-dS). An option whose value is optional takes one only when attached (`--manage-cgroups=soft`,
// `-v4`, `-vvv`): a bare `--manage-cgroups --pidfile F` leaves --pidfile alone, as getopt does.
// criu's yes/no options can be negated with `--no-` (--no-display-stats). Unknown options are
// errors, as with criu, so a caller learns at once that something is not supported; options
// criu documents are all known here (criu-options.ts), each supported, without effect, or refused.

export interface OptionSpec {
  long: string;
  short?: string;
  /** Takes a value (`--opt VALUE`, `--opt=VALUE`, `-oVALUE`). */
  value?: boolean;
  /** Takes a value only when attached to it (`--opt=VALUE`, `-oVALUE`); bare, it has none. */
  optionalValue?: boolean;
  /** May be given several times (values collected). */
  repeat?: boolean;
  /** criu's BOOL_OPT: `--no-OPT` is accepted and clears it. */
  negatable?: boolean;
  /** Another name of option `alias` (criu's --daemon is --restore-detached). */
  alias?: string;
  /** Accepted, and does nothing here: why (said in the log at -v3 and up). */
  noEffect?: string;
  /** Refused with this reason when given. */
  refused?: string;
}

export interface Parsed {
  action?: string;
  /** Values of options that take one; an option given bare with an optional value has ''. */
  values: Map<string, string[]>;
  flags: Set<string>;
  verbosity: number;
  positional: string[];
}

export class UsageError extends Error {}

/** An empty parse result, with criu's default verbosity (2: errors and warnings). */
export function emptyParsed(): Parsed {
  return { values: new Map(), flags: new Set(), verbosity: 2, positional: [] };
}

/**
 * Parse `argv` into `out` (a fresh result by default). `source` names where the words come
 * from in errors (a configuration file); words there that are not options are errors.
 */
export function parseArgs(argv: readonly string[], specs: readonly OptionSpec[], out: Parsed = emptyParsed(), source?: string): Parsed {
  const byLong = new Map(specs.map((s) => [s.long, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const where = source ? `${source}: ` : '';
  const canonical = (spec: OptionSpec): OptionSpec => (spec.alias ? byLong.get(spec.alias)! : spec);
  const setValue = (spec: OptionSpec, v: string) => {
    const list = out.values.get(spec.long) ?? [];
    if (list.length && !spec.repeat) list.length = 0;
    list.push(v);
    out.values.set(spec.long, list);
  };
  /** An option (long name `shown` for errors); `inline` its attached value. Returns the next index. */
  const take = (given: OptionSpec, shown: string, inline: string | undefined, i: number): number => {
    const spec = canonical(given);
    if (spec.long === 'verbosity') {
      // criu's -v[v...|NUM], --verbosity[=NUM]: bare one more, `v`s one more each, a number sets.
      if (inline === undefined || inline === '') out.verbosity++;
      else if (/^v+$/.test(inline)) out.verbosity += inline.length + 1;
      else if (/^\d+$/.test(inline)) out.verbosity = Number(inline);
      else throw new UsageError(`${where}option ${shown} wants a number, got '${inline}'`);
      return i;
    }
    if (spec.optionalValue) {
      setValue(spec, inline ?? '');
      return i;
    }
    if (!spec.value) {
      if (inline !== undefined) throw new UsageError(`${where}option ${shown} takes no value`);
      out.flags.add(spec.long);
      return i;
    }
    let v = inline;
    if (v === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`${where}option ${shown} needs a value`);
      v = argv[++i]!;
    }
    setValue(spec, v);
    return i;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      if (source) throw new UsageError(`${where}'--' is not an option`);
      out.positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const spec = byLong.get(name);
      const negated = !spec && name.startsWith('no-') ? byLong.get(name.slice(3)) : undefined;
      if (negated?.negatable) {
        if (eq >= 0) throw new UsageError(`${where}option --${name} takes no value`);
        out.flags.delete(canonical(negated).long);
        continue;
      }
      if (!spec) throw new UsageError(`${where}unknown option --${name}`);
      i = take(spec, `--${name}`, eq < 0 ? undefined : a.slice(eq + 1), i);
    } else if (a.startsWith('-') && a.length > 1) {
      // A cluster of flags (-dS), the last of which may take the rest or the next word as value.
      for (let j = 1; j < a.length; j++) {
        const spec = byShort.get(a[j]!);
        if (!spec) throw new UsageError(`${where}unknown option -${a[j]}${a.length > 2 ? ` (in ${a})` : ''}`);
        const c = canonical(spec);
        const takesValue = c.value || c.optionalValue || c.long === 'verbosity';
        if (!takesValue) {
          take(spec, `-${a[j]}`, undefined, i);
          continue;
        }
        i = take(spec, `-${a[j]}`, j + 1 < a.length ? a.slice(j + 1) : undefined, i);
        break;
      }
    } else if (source) {
      throw new UsageError(`${where}'${a}' is not an option (one option a line, without its dashes)`);
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
