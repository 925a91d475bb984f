// The `stasis` command line: criu's actions and options, so that scripts and runtimes that call
// `criu` can call stasis instead. Every failure is one line on stderr and a non-zero exit.

import type { LockMethod } from '../net-ns/network-lock.js';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
// Each action loads its own modules when it runs, which spares loading the rest where stasis runs
// as ES modules (the one-file build loads all at once). runc's VERSION check, the first of the
// two `stasis swrk` it starts per command, is answered before any of this (bin/swrk-version.cjs).
import { hasHelp, helpText } from './help.js';
import { makePrivateDirs } from '../images/private-file.js';
import { printable } from '../images/errors.js';
import { Logger } from './log.js';
import { Progress } from './progress.js';
import { VERSION, versionText } from './version.js';
import { UsageError, emptyParsed, joinNsFile, parseArgs, parseExternalNet, parseInheritFd, type OptionSpec, type Parsed } from './options.js';
import { CHOICES, OPTIONS, REFUSED_ACTIONS } from './criu-options.js';
import { cliConfigFiles, configWords } from './config-file.js';
import { checkFeatureName } from './features.js';
import type { JoinNs } from '../task/restore.js';
import type { CgRoot } from '../cgroup/cgroups.js';

/** criu's options (criu-options.ts says what stasis makes of each; help.ts describes them). */
export { OPTIONS };

/**
 * The command line with criu's configuration files before it (config-file.ts): each file's
 * settings, then the command line's, a later one overriding an earlier. Returns what was read.
 */
function parseCommandLine(argv: string[]): { p: Parsed; configs: string[] } {
  const p = emptyParsed();
  const configs: string[] = [];
  for (const file of cliConfigFiles(argv)) {
    const words = configWords(file);
    if (!words) continue;
    parseArgs(words, OPTIONS, p, file);
    configs.push(file);
  }
  return { p: parseArgs(argv, OPTIONS, p), configs };
}

/** A whole number option's value. */
function whole(p: Parsed, name: string): number | undefined {
  const v = p.values.get(name)?.[0];
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} wants a whole number, got '${v}'`);
  return Number(v);
}

function given(p: Parsed, spec: OptionSpec): boolean {
  return p.flags.has(spec.long) || p.values.has(spec.long);
}

/**
 * Refuse what stasis cannot do and values criu would not take, before anything is touched (as
 * criu checks its options): one line naming the option.
 */
function checkOptions(p: Parsed): void {
  for (const spec of OPTIONS) {
    if (spec.refused && given(p, spec)) throw new UsageError(`--${spec.long} is not supported: ${spec.refused}`);
  }
  for (const [name, choices] of Object.entries(CHOICES)) {
    for (const v of p.values.get(name) ?? []) {
      if (v === '' && OPTIONS.find((s) => s.long === name)?.optionalValue) continue;
      if (!choices.includes(v)) throw new UsageError(`--${name}: '${v}' is not one of ${choices.join(', ')}`);
    }
  }
  for (const name of ['timeout', 'status-fd', 'port', 'ps-socket']) whole(p, name);
  for (const v of p.values.get('close') ?? []) if (!/^\d+$/.test(v)) throw new UsageError(`--close wants a descriptor number, got '${v}'`);
  const ghost = p.values.get('ghost-limit')?.[0];
  if (ghost !== undefined && !/^\d+[KMG]?$/.test(ghost)) throw new UsageError(`--ghost-limit wants a size (N, NK, NM or NG), got '${ghost}'`);
  const feature = p.values.get('feature')?.[0];
  if (feature !== undefined) checkFeatureName(feature);
  const statusFd = whole(p, 'status-fd');
  if (statusFd !== undefined) {
    try {
      fs.fstatSync(statusFd);
    } catch {
      throw new UsageError(`--status-fd ${statusFd}: no such open descriptor`);
    }
  }
  if (p.flags.has('restore-sibling') && !p.flags.has('restore-detached')) {
    throw new UsageError('--restore-sibling only makes sense with --restore-detached (-d)');
  }
}

/** Say in the log what was read and what was accepted without effect (criu's "Will ..." lines). */
function logAccepted(p: Parsed, configs: string[], logger: Logger): void {
  for (const f of configs) logger.log(3, `Read the configuration file ${f}`);
  for (const spec of OPTIONS) {
    if (spec.noEffect && given(p, spec)) logger.log(3, `--${spec.long}: accepted, no effect here: ${spec.noEffect}`);
  }
  if (p.action === 'dump' && p.values.has('pidfile')) logger.log(3, '--pidfile: a dump writes no pidfile (criu writes it on restore)');
  if (p.action === 'dump' && p.values.has('cgroup-root')) logger.log(3, '--cgroup-root: no effect on a dump (cgroups are not saved)');
  if (p.values.get('ext-unix-sk')?.[0]) logger.log(3, '--ext-unix-sk=INODES: any external unix socket is allowed, not only those');
  if (p.flags.has('link-remap')) logger.log(3, 'Will allow link remaps on FS');
}

/**
 * criu's --status-fd: a zero byte written to FD, and FD closed, once the action is done — the
 * dump's images written, the restored tree running (before a restore without -d waits for it).
 */
function statusReady(p: Parsed, logger: Logger): void {
  const fd = whole(p, 'status-fd');
  if (fd === undefined) return;
  try {
    fs.writeSync(fd, Buffer.from([0]));
  } catch (e) {
    // Nobody reading any more (EPIPE): what was done is done all the same.
    logger.log(2, `Warn: --status-fd ${fd}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  } finally {
    fs.closeSync(fd);
  }
}

function required(p: Parsed, name: string, what: string): string {
  const v = p.values.get(name)?.[0];
  if (v === undefined) throw new UsageError(`${what} is needed (--${name})`);
  return v;
}

/** --ext-mount-map A:B and --external mnt[A]:B, as A → B. */
function mountMap(p: Parsed): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of p.values.get('ext-mount-map') ?? []) {
    const i = v.indexOf(':');
    if (i <= 0) throw new UsageError(`--ext-mount-map wants KEY:VALUE, got '${v}'`);
    out.set(v.slice(0, i), v.slice(i + 1));
  }
  for (const v of p.values.get('external') ?? []) {
    if (/^net\[/.test(v)) continue; // netnsMap
    const m = /^mnt\[(.+)\]:(.*)$/.exec(v);
    if (!m) throw new UsageError(`--external: only mnt[KEY]:VALUE and net[INODE]:NAME are supported, got '${v}'`);
    out.set(m[1]!, m[2]!);
  }
  return out;
}

/** --external net[INODE]:NAME (a network namespace left out of the dump), as INODE → NAME. */
function netnsMap(p: Parsed): Map<number, string> {
  const out = new Map<number, string>();
  for (const v of p.values.get('external') ?? []) {
    if (!/^net\[/.test(v)) continue;
    const net = parseExternalNet(v);
    if (!net) throw new UsageError(`--external net wants net[INODE]:NAME, got '${v}'`);
    out.set(...net);
  }
  return out;
}

/**
 * --cgroup-root [CTRL:]/PATH on restore: the cgroup of each hierarchy the restored tree goes into
 * (no CTRL: the v2 hierarchy). As criu, not with --manage-cgroups=none or =ignore.
 */
function cgRoots(p: Parsed): CgRoot[] | undefined {
  const mode = p.values.get('manage-cgroups')?.[0];
  if (mode === 'none' || mode === 'ignore') return undefined;
  const roots = (p.values.get('cgroup-root') ?? []).map((v) => {
    const i = v.indexOf(':');
    const [ctrl, cgPath] = i < 0 ? ['', v] : [v.slice(0, i), v.slice(i + 1)];
    if (!cgPath.startsWith('/')) throw new UsageError(`--cgroup-root wants [CONTROLLER:]/PATH, got '${v}'`);
    return { ctrl, path: cgPath };
  });
  return roots.length ? roots : undefined;
}

/** --join-ns NS:FILE (criu's; NS ipc, uts, net or time; FILE a namespace file or a PID). */
function joinNs(p: Parsed): JoinNs[] {
  return (p.values.get('join-ns') ?? []).map((v) => {
    const m = /^(ipc|uts|net|time):([^,]+)$/.exec(v);
    if (!m) throw new UsageError(`--join-ns wants ipc|uts|net|time:NSFILE, got '${v}'`);
    const kind = m[1] as JoinNs['kind'];
    return { kind, file: joinNsFile(kind, m[2]!) };
  });
}

/**
 * criu's --timeout, in seconds: a bound on collecting the tree, freezing included (without it,
 * or with 0, stasis's own: 5 s for each task to stop, 10 s for a cgroup to freeze).
 */
function seizeTimeout(p: Parsed): number | undefined {
  const s = whole(p, 'timeout');
  return s ? s * 1000 : undefined; // 0: no bound of its own, as criu's alarm(0)
}

function networkLock(p: Parsed): LockMethod | undefined {
  const v = p.values.get('network-lock')?.[0];
  if (v === undefined) return undefined;
  return v as LockMethod; // checked against criu's values by the option table
}

function emptyNs(p: Parsed): number {
  const v = p.values.get('empty-ns')?.[0];
  if (v === undefined) return 0;
  if (v !== 'net') throw new UsageError(`--empty-ns: only 'net' is supported, got '${v}'`);
  return 0x40000000;
}

/** bin/swrk-version.cjs (two levels up from dist/runtime-hook/ and from dist/bundle/ alike). */
interface SwrkVersion {
  firstRecord(fdArg: string): Buffer | 'answered' | 'gone' | 'too-large' | undefined;
}

/**
 * `stasis swrk FD`. The first request is read with a plain read(2) (one record of the
 * SOCK_SEQPACKET socket) and a lone VERSION request answered at once, by bin/swrk-version.cjs:
 * bin/stasis does it before loading stasis when started as `swrk FD` alone and hands over the
 * record (`launch.swrkFirst`), otherwise it is done here. Anything else goes to the RPC server
 * with the record it starts with (undefined: it could not be read this way, the server reads).
 */
async function swrkCommand(fdArg: string, launch: Launch): Promise<number> {
  const first = 'swrkFirst' in launch
    ? launch.swrkFirst
    : (createRequire(import.meta.url)('../../bin/swrk-version.cjs') as SwrkVersion).firstRecord(fdArg);
  if (first === 'answered') return 0;
  if (first === 'gone') return 1; // the client is gone
  return (await import('./swrk.js')).swrk(fdArg, first);
}

function logPath(p: Parsed, imagesDir: string | undefined): string | undefined {
  const f = p.values.get('log-file')?.[0];
  if (!f) return undefined;
  if (f === '-' || path.isAbsolute(f)) return f === '-' ? undefined : f;
  return path.join(p.values.get('work-dir')?.[0] ?? imagesDir ?? '.', f);
}

/**
 * `--help`, `-h` and `help`, with or without an action (`stasis dump --help`, `stasis help dump`):
 * the help for that action, or for all. Undefined when `argv` asks for something else.
 */
function helpAsked(argv: string[]): string | undefined {
  const action = argv[0] === 'help' ? argv[1] : argv[0]?.startsWith('-') ? undefined : argv[0];
  if (argv[0] !== 'help' && !argv.some((a) => a === '--help' || a === '-h')) return undefined;
  if (action !== undefined && !hasHelp(action)) throw new UsageError(`unknown action '${action}' (stasis --help lists them)`);
  return helpText(action);
}

async function run(argv: string[], launch: Launch): Promise<number> {
  const help = helpAsked(argv);
  if (help !== undefined) {
    process.stdout.write(help);
    return 0;
  }
  if (argv[0] === 'show') return (await import('../images/show.js')).showCommand(argv.slice(1));
  if (argv[0] === 'container') return (await import('./container-cli.js')).containerCommand(argv.slice(1));
  if (argv[0] === 'inspect') return (await import('../oci-spec/inspect-command.js')).inspectCommand(argv.slice(1));
  if (argv[0] === 'memparse') return (await import('../oci-spec/memparse.js')).memparseCommand(argv.slice(1));
  if (argv[0] === 'diff') return (await import('../oci-spec/diff.js')).diffCommand(argv.slice(1));
  const { p, configs } = parseCommandLine(argv);
  if (p.flags.has('version')) {
    process.stdout.write(versionText());
    return 0;
  }
  if (!p.action) throw new UsageError('no action given (stasis --help lists them)');
  const refusedAction = REFUSED_ACTIONS[p.action];
  if (refusedAction) throw new UsageError(`${p.action} is not supported: ${refusedAction}`);
  checkOptions(p);
  const imagesDir = p.values.get('images-dir')?.[0];
  const workDir = p.values.get('work-dir')?.[0];
  const log = logPath(p, imagesDir);
  // A dump's images directory is made (0700) before the log that goes into it by default.
  if (p.action === 'dump' && imagesDir && log) {
    try {
      makePrivateDirs(imagesDir);
    } catch (e) {
      throw new Error(`cannot create the images directory ${imagesDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const logger = new Logger(p.verbosity, log);
  try {
    logAccepted(p, configs, logger);
    switch (p.action) {
      case 'dump': {
        const pid = Number(required(p, 'tree', 'the PID to dump'));
        if (!Number.isInteger(pid) || pid <= 0) throw new UsageError(`--tree wants a PID, got '${p.values.get('tree')![0]}'`);
        const imagesDir = required(p, 'images-dir', 'an images directory');
        const progress = new Progress('dump');
        const { dump } = await import('../task/dump.js');
        const r = await dump({
          pid, imagesDir, workDir, leaveRunning: p.flags.has('leave-running'),
          fileLocks: p.flags.has('file-locks'), shellJob: p.flags.has('shell-job'), extUnixSk: p.values.has('ext-unix-sk') || p.flags.has('ext-unix-sk'),
          extMnt: mountMap(p), externalNetns: netnsMap(p), emptyNs: emptyNs(p), freezeCgroup: p.values.get('freeze-cgroup')?.[0],
          linkRemap: p.flags.has('link-remap'), seizeTimeoutMs: seizeTimeout(p),
          tcpEstablished: p.flags.has('tcp-established'), tcpClose: p.flags.has('tcp-close'), networkLock: networkLock(p),
          skipInFlight: p.flags.has('skip-in-flight'),
          log: (m) => logger.log(3, m), progress: progress.callback,
        }).finally(() => progress.end());
        statusReady(p, logger);
        if (p.flags.has('display-stats')) {
          const s = r.stats;
          process.stdout.write(`Displaying dump stats:\nFreezing time: ${s.freezing_time} us\nFrozen time: ${s.frozen_time} us\n` +
            `Memory dump time: ${s.memdump_time} us\nMemory write time: ${s.memwrite_time} us\n` +
            `Memory pages scanned: ${s.pages_scanned} (0x${s.pages_scanned.toString(16)})\n` +
            `Memory pages written: ${s.pages_written} (0x${s.pages_written.toString(16)})\n`);
        }
        logger.log(1, `Dumping finished successfully`);
        return 0;
      }
      case 'restore': {
        const inheritFds = new Map((p.values.get('inherit-fd') ?? []).map(parseInheritFd));
        const imagesDir = required(p, 'images-dir', 'an images directory');
        const progress = new Progress('restore');
        const { restore, waitForExit } = await import('../task/restore.js');
        const r = await restore({
          imagesDir, workDir, inheritFds, shellJob: p.flags.has('shell-job'), siblingOfStasis: p.flags.has('restore-sibling'),
          root: p.values.get('root')?.[0], extMnt: mountMap(p), joinNs: joinNs(p), cgRoots: cgRoots(p),
          tcpEstablished: p.flags.has('tcp-established'), tcpClose: p.flags.has('tcp-close'),
          log: (m) => logger.log(3, m), warn: (m) => logger.log(2, `Warn: ${m}`), progress: progress.callback,
        }).finally(() => progress.end());
        const pidfile = p.values.get('pidfile')?.[0];
        // Relative to the work directory, which is the images directory unless -W says (as criu).
        if (pidfile) fs.writeFileSync(path.resolve(workDir ?? imagesDir, pidfile), `${r.pid}`);
        if (p.flags.has('display-stats')) {
          process.stdout.write(`Displaying restore stats:\nPages restored: ${r.pages} (0x${r.pages.toString(16)})\nRestore time: ${Math.round(r.timeMs * 1000)} us\n`);
        }
        logger.log(1, `Restore finished successfully`);
        statusReady(p, logger);
        if (p.flags.has('restore-detached')) return 0;
        logger.close();
        return waitForExit(r.pid);
      }
      case 'check': {
        const feature = p.values.get('feature')?.[0];
        if (feature !== undefined) return (await import('./features.js')).checkFeature(feature, process.stdout, process.stderr);
        return (await import('./check.js')).checkKernel(process.stdout);
      }
      case 'swrk':
        if (p.positional.length !== 1) throw new UsageError('swrk wants one argument: the socket descriptor');
        return await swrkCommand(p.positional[0]!, launch);
      case 'demo':
        return (await import('./demo.js')).demo(process.stdout);
      default:
        throw new UsageError(`unknown action '${p.action}'`);
    }
  } finally {
    logger.close();
  }
}

/** What bin/stasis did before loading stasis. */
export interface Launch {
  /**
   * `swrk FD`: the first record it read from FD (see swrkCommand), or 'too-large' when the record
   * did not fit its buffer; present only if it tried.
   */
  swrkFirst?: Buffer | 'too-large';
}

export async function main(argv: string[], launch: Launch = {}): Promise<void> {
  // A reader that goes away (`stasis show ... | head`) ends the output, not with a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  try {
    process.exitCode = await run(argv, launch);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`stasis: ${printable(msg.split('\n')[0]!)}\n`);
    process.exitCode = 1;
  }
}

export { VERSION };
