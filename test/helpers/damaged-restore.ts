// Damaged image sets, and a driver that restores many of them in one process the way
// `stasis restore` does (the command line's main(), in-process: a restore that fails before
// creating a process takes a millisecond, a fresh node for each would take 80).
//   node dist/test/helpers/damaged-restore.js JOB_JSON
// JOB_JSON is a DamageJob; one JSON line per set (a SetResult) goes to the file job.out.

import fs from 'node:fs';
import path from 'node:path';
import { MANIFEST_FILE } from '../../images/index.js';

/** A dump to damage: its directory and the PID it restores. */
export interface DumpedSet {
  dir: string;
  pid: number;
  /** --inherit-fd key of its stdout (a pipe the restore replaces with /dev/null). */
  key: string;
}

export interface DamageJob {
  base: DumpedSet;
  /** Another workload's dump, files of which are mixed into the base. */
  other: DumpedSet;
  seed: number;
  count: number;
  /** Work directory (one set at a time is made there). */
  work: string;
  out: string;
}

export type SetKind = 'damaged' | 'mixed' | 'criu-style';

export interface SetResult {
  n: number;
  kind: SetKind;
  /** What was done to the set, e.g. `flip core-43.img@96`. */
  damage: string[];
  /** Files whose content the damage changed (or removed, or took from the other dump). */
  touched: string[];
  exitCode: number;
  stderr: string;
  /** PIDs of the two dumps (and the one restored, killed by then) that exist after the set. */
  left: number[];
  /** The PID a restore that succeeded gave (--pidfile); it was killed and reaped. */
  restored?: number;
  /** Descriptors of the driver after the restore, minus before. */
  fdDelta: number;
}

/** A small deterministic generator (mulberry32), so a seed names the same sets on every machine. */
export function random(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** The kind of set number `n`: 3 in 10 mixed, 3 in 10 damaged, 4 in 10 without manifest. */
export function kindOf(n: number): SetKind {
  const k = n % 10;
  return k < 3 ? 'mixed' : k < 6 ? 'damaged' : 'criu-style';
}

/**
 * Makes set `n` in `dir` from `job.base`: a copy with one or two files damaged (bits flipped,
 * bytes overwritten, cut short, removed) or, for a mixed set, one to three files taken from the
 * other dump (renamed to the base's PID). A criu-style set has its manifest removed first, as
 * CRIU's dumps have none, and is only damaged.
 */
export function makeSet(job: DamageJob, n: number, dir: string, rnd: (n: number) => number): Pick<SetResult, 'kind' | 'damage' | 'touched'> {
  for (;;) {
    const set = tryMakeSet(job, n, dir, rnd);
    if (set.touched.length) return set;
  }
}

/** makeSet(), once: the damage may change nothing (bytes overwritten with what was there). */
function tryMakeSet(job: DamageJob, n: number, dir: string, rnd: (n: number) => number): Pick<SetResult, 'kind' | 'damage' | 'touched'> {
  const kind = kindOf(n);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.cpSync(job.base.dir, dir, { recursive: true });
  if (kind === 'criu-style') fs.rmSync(path.join(dir, MANIFEST_FILE));
  const images = fs.readdirSync(dir).filter((f) => f.endsWith('.img')).sort();
  const targets = kind === 'damaged' ? [...images, MANIFEST_FILE] : images;
  const damage: string[] = [];
  const touched = new Set<string>();
  if (kind === 'mixed') {
    const fromOther = (f: string) => f.replace(String(job.base.pid), String(job.other.pid));
    const mixable = images.filter((f) => fs.existsSync(path.join(job.other.dir, fromOther(f))));
    for (let i = 1 + rnd(3); i > 0; i--) {
      const f = mixable[rnd(mixable.length)]!;
      const theirs = fs.readFileSync(path.join(job.other.dir, fromOther(f)));
      if (theirs.equals(fs.readFileSync(path.join(dir, f)))) continue; // the same in both dumps
      fs.writeFileSync(path.join(dir, f), theirs);
      damage.push(`mix ${f}`);
      touched.add(f);
    }
    if (!touched.size) {
      // Every pick was alike in both dumps: the inventory never is (its run id).
      fs.copyFileSync(path.join(job.other.dir, 'inventory.img'), path.join(dir, 'inventory.img'));
      damage.push('mix inventory.img');
      touched.add('inventory.img');
    }
    return { kind, damage, touched: [...touched] };
  }
  for (let i = 1 + rnd(2); i > 0; i--) {
    const f = targets[rnd(targets.length)]!;
    const file = path.join(dir, f);
    if (!fs.existsSync(file)) continue;
    const bytes = fs.readFileSync(file);
    const at = rnd(Math.max(1, bytes.length));
    const op = rnd(f === MANIFEST_FILE ? 4 : 5);
    if (op === 0) {
      const bit = rnd(8);
      bytes[at] ^= 1 << bit;
      damage.push(`flip ${f}@${at}.${bit}`);
    } else if (op === 1) {
      const len = 1 + rnd(8);
      for (let j = 0; j < len && at + j < bytes.length; j++) bytes[at + j] = rnd(256);
      damage.push(`overwrite ${f}@${at}+${len}`);
    } else if (op === 2) {
      bytes.fill(0, at, Math.min(bytes.length, at + 1 + rnd(16)));
      damage.push(`zero ${f}@${at}`);
    } else if (op === 3) {
      fs.writeFileSync(file, bytes.subarray(0, at));
      damage.push(`cut ${f}@${at}`);
      touched.add(f);
      continue;
    } else {
      fs.rmSync(file);
      damage.push(`remove ${f}`);
      touched.add(f);
      continue;
    }
    // An overwrite may happen to write what was there.
    if (!bytes.equals(fs.readFileSync(file))) {
      fs.writeFileSync(file, bytes);
      touched.add(f);
    }
  }
  return { kind, damage, touched: [...touched] };
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function exists(pid: number): boolean {
  return fs.existsSync(`/proc/${pid}`);
}

async function drive(job: DamageJob): Promise<void> {
  const { main } = await import('../../runtime-hook/cli.js');
  const { waitTask } = await import('../../sys/ptrace.js');
  process.stdout.setMaxListeners(0); // main() adds an EPIPE listener per call
  const rnd = random(job.seed);
  const devNull = fs.openSync('/dev/null', 'w');
  const out = fs.openSync(job.out, 'w');
  const dir = path.join(job.work, 'set');
  const pidfile = path.join(job.work, 'restored.pid');
  const realWrite = process.stderr.write.bind(process.stderr);
  for (let n = 0; n < job.count; n++) {
    const set = makeSet(job, n, dir, rnd);
    const fdsBefore = openFds();
    let stderr = '';
    process.stderr.write = ((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    }) as typeof process.stderr.write;
    process.exitCode = 0;
    fs.rmSync(pidfile, { force: true });
    try {
      await main(['restore', '-d', '-D', dir, '--inherit-fd', `fd[${devNull}]:${job.base.key}`, '--pidfile', pidfile]);
    } finally {
      process.stderr.write = realWrite;
    }
    const exitCode = Number(process.exitCode ?? 0);
    process.exitCode = 0;
    const fdDelta = openFds() - fdsBefore;
    // A set no reader can tell from a sound one was restored: its process goes, reaped here
    // (the restored root is this process's child).
    const restored = fs.existsSync(pidfile) ? Number(fs.readFileSync(pidfile, 'utf8')) : undefined;
    if (restored) {
      process.kill(restored, 'SIGKILL');
      waitTask(restored, { timeoutMs: 5000 });
    }
    const left = [...new Set([job.base.pid, job.other.pid, ...(restored ? [restored] : [])])].filter(exists);
    const result: SetResult = { n, ...set, exitCode, stderr, left, restored, fdDelta };
    fs.writeSync(out, `${JSON.stringify(result)}\n`);
  }
  fs.closeSync(out);
  fs.closeSync(devNull);
  fs.rmSync(dir, { recursive: true, force: true });
}

if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  drive(JSON.parse(process.argv[2]!) as DamageJob).then(() => process.exit(0), (e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(2);
  });
}
