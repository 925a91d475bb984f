// The round trip of self-checking workloads in the shape of CRIU's test suite's user-namespace
// flavour ("uns"; test-containers/uns-flavour.ts): the init of new user, pid, mount, net, ipc and
// uts namespaces with maps of two extents each, its own root and a time namespace, the workload
// its child (as zdtm's unprivileged tests are, uid 18943 inside, or root inside). Each is dumped
// (killed) and restored the way zdtm drives criu — `dump -t INIT --root ROOT`, `restore --restore-detached
// --root ROOT` — and checks itself; the restored namespaces must be as before seen from outside
// too: the maps, the owner of each namespace, the ids and capability sets of every task.
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { descendants, type Workload } from '../../test-containers/launch.js';
import { startUns, unsRoot, type UnsOptions } from '../../test-containers/uns-flavour.js';
import { ownerUserNs } from '../../sys/nsfs.js';
import { readNamespaces } from '../../sys/proc/index.js';
import { sharedDir } from './paths.js';
import { afterDump, beforeDump, fdKey, killPid, restoreUnderReaper, stasis, tmpDir } from './stasis.js';

export const criuBin = path.join(sharedDir, 'anchors/criu-4.2/criu');

const OWNED = ['pid', 'mnt', 'net', 'ipc', 'uts', 'time'] as const;

/** What the host sees of a tree in the uns shape: its maps, namespaces' owners, every task's ids. */
function outsideView(init: number): Record<string, string> {
  const view: Record<string, string> = {};
  for (const f of ['uid_map', 'gid_map', 'setgroups']) view[f] = fs.readFileSync(`/proc/${init}/${f}`, 'utf8');
  const user = readNamespaces(init, ['user']).user!.ino;
  for (const kind of OWNED) view[`${kind} owned by the user namespace`] = String(ownerUserNs(init, kind) === user);
  view['user namespace is not the host\'s'] = String(user !== readNamespaces(process.pid, ['user']).user!.ino);
  for (const pid of [init, ...descendants(init)]) {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const nspid = /^NSpid:.*\s(\d+)$/m.exec(status)![1]!;
    view[`task ${nspid}`] = status.split('\n').filter((l) => /^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)):/.test(l)).join('; ');
  }
  return view;
}

/** The restored init: the process below the restore's reaper that is PID 1 of its namespace. */
function restoredInit(r: Workload): number {
  const init = descendants(r.reaper.pid!).find((p) => {
    try {
      return /^NSpid:\s+\d+\s+1$/m.test(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
    } catch {
      return false;
    }
  });
  if (init === undefined) throw new Error(`no restored init below the reaper: ${r.lines.join(' | ')}`);
  return init;
}

/** The Error lines of a log in DIR, for failure messages. */
function errors(dir: string, name: string): string {
  try {
    return fs.readFileSync(path.join(dir, name), 'utf8').split('\n').filter((l) => /Error|^stasis/.test(l)).join(' | ');
  } catch {
    return `(no ${name})`;
  }
}

/**
 * Workload `name` in the uns shape, dumped by `dumper` and restored by `restorer` (stasis unless
 * CRIU's binary is named) as zdtm does it; then it checks itself, and `items` must be among its ok
 * lines. `criuFails`: the items a CRIU restore gets wrong (as on its own dump): exactly those fail,
 * every other passes. Everything it started is killed and its root removed at the end.
 */
export async function unsRoundTrip(t: ExecutionContext, name: string, opts: UnsOptions & {
  items?: string[]; dumper?: 'stasis' | 'criu'; restorer?: 'stasis' | 'criu'; criuFails?: string[];
  /** Options of both dump and restore (as a zdtm test's .desc opts: --file-locks, --link-remap...). */
  crOpts?: string[];
} = {}): Promise<void> {
  const root = unsRoot(name);
  const started: Workload[] = [];
  let pids: number[] = [];
  t.teardown(async () => {
    pids.forEach(killPid);
    for (const w of started) await w.kill();
    fs.rmSync(path.dirname(root), { recursive: true, force: true });
  });
  const s = await startUns(name, root, opts);
  started.push(s.w);
  pids = [s.init];
  const before = outsideView(s.init);
  const dir = tmpDir(t);
  fs.chmodSync(dir, 0o755);
  const key = fdKey(s.init, 1);
  const dumpArgs = ['dump', '-t', String(s.init), '-D', dir, '--root', root, '-v4', '-o', 'dump.log', ...(opts.crOpts ?? [])];
  let d;
  if (opts.dumper === 'criu') {
    const fds = beforeDump(dumpArgs); // the descriptors stasis's restore must give back, as for its own dumps
    d = await execa(criuBin, dumpArgs, { reject: false, all: true });
    afterDump(dumpArgs, fds, d.exitCode === 0);
  } else {
    d = await stasis(dumpArgs);
  }
  t.is(d.exitCode, 0, `dump: ${d.all} ${errors(dir, 'dump.log')}`);
  if (d.exitCode !== 0) return;
  t.regex(await s.w.exitOf(s.init), new RegExp(`^signal ${s.init} 9$`), 'the dump killed the tree');

  const tool = opts.restorer === 'criu' ? [criuBin] : undefined;
  const r = await restoreUnderReaper(t, dir, key, s.init, ['--root', root, '-v4', '-o', 'restore.log', ...(opts.crOpts ?? [])], {}, tool);
  started.push(r);
  const rc = await r.exitOf(r.pid, 60_000);
  t.is(rc, `exit ${r.pid} 0`, `restore: ${r.lines.join(' | ')} ${errors(dir, 'restore.log')}`);
  if (rc !== `exit ${r.pid} 0`) return;
  const init = restoredInit(r);
  pids.push(init);
  t.deepEqual(outsideView(init), before, 'the maps, the namespaces\' owner and every task\'s ids and capabilities are as before');

  fs.writeFileSync(path.join(s.work, 'check'), '');
  await r.waitForLine(/^result /, 20_000);
  const failed = r.lines.filter((l) => l.startsWith('FAIL')).map((l) => /^FAIL ([^:]+)/.exec(l)![1]!);
  t.deepEqual(failed, opts.criuFails ?? [], r.lines.filter((l) => l.startsWith('FAIL')).join('\n'));
  for (const item of opts.items ?? []) t.true(r.lines.includes(`ok ${item}`), item);
  const passed = !opts.criuFails?.length;
  t.true(r.lines.includes(`result ${passed ? 'PASS' : 'FAIL'}`), r.lines.join('\n'));
  t.is(await r.exitOf(init, 20_000), `exit ${init} ${passed ? 0 : 1}`, 'the init exited with the workload\'s status');
}

