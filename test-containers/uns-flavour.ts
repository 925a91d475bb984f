// A self-checking workload started in the shape CRIU's test suite gives a test in its
// user-namespace flavour (workloads/uns-flavour.c): the init of new user, pid, mount, net, ipc
// and uts namespaces (maps not the identity, two extents each), its root a directory of its own
// (pivot_root, proc, /run, devpts), a time namespace of its own, and the workload its child there.
// The root is built here: the workload and the launcher linked statically in /bin, the workload's
// work directory /work, everything owned by the namespace's root (host 20000:400000).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildWorkload, underReaper, type Workload } from './launch.js';

/** The namespace's root as the host sees it (uid_map "0 20000 20000", gid_map "0 400000 50000"). */
export const UNS_ROOT_IDS = { uid: 20000, gid: 400000 };

export interface UnsTest {
  /** The directory the tree has as its root (what dump and restore get as --root). */
  root: string;
  /** The workload's work directory as the host sees it (/work inside). */
  work: string;
  /** The launcher under its reaper (the tree's init is left to that reaper). */
  w: Workload;
  /** The host PID of the namespaces' init: the tree's root. */
  init: number;
  /** The workload's `ready` line. */
  ready: string;
}

export interface UnsOptions {
  /** Run the workload as zdtm's unprivileged tests are: uid 18943, gid 58467, groups 27495 48244 inside. */
  dropIds?: boolean;
  /** Workload arguments after its work directory. */
  args?: string[];
  /** The workload's whole argument list, given its work directory (/work), for one taking it elsewhere. */
  argv?: (work: string) => string[];
  ready?: RegExp;
}

/** A fresh root for workload `name`; removed by `cleanup`. */
export function unsRoot(name: string): string {
  const top = fs.mkdtempSync(path.join(os.tmpdir(), `stasis-uns-${name}-`));
  fs.chmodSync(top, 0o755);
  const root = path.join(top, 'root');
  for (const d of ['proc', 'run', 'dev/pts', 'dev/shm', 'bin', 'tmp', 'work']) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.chmodSync(path.join(root, 'tmp'), 0o1777);
  fs.chmodSync(path.join(root, 'work'), 0o777);
  execFileSync('mknod', ['-m', '666', path.join(root, 'dev/null'), 'c', '1', '3']);
  fs.copyFileSync(buildWorkload(name, 'static'), path.join(root, 'bin', name));
  fs.copyFileSync(buildWorkload('uns-flavour', 'static'), path.join(root, 'bin/uns-flavour'));
  for (const f of [name, 'uns-flavour']) fs.chmodSync(path.join(root, 'bin', f), 0o755);
  execFileSync('chown', ['-R', `${UNS_ROOT_IDS.uid}:${UNS_ROOT_IDS.gid}`, root]);
  return root;
}

/** Start workload `name` in the uns shape in `root` (made by unsRoot); resolves once it is ready. */
export async function startUns(name: string, root: string, opts: UnsOptions = {}): Promise<UnsTest> {
  const w = await underReaper([buildWorkload('uns-flavour', 'static'), ...(opts.dropIds ? ['-u'] : []), root,
    `/bin/${name}`, ...(opts.argv ? opts.argv('/work') : ['/work', ...(opts.args ?? [])])]);
  let init = 0;
  try {
    init = Number((await w.waitForLine(/^init \d+$/)).split(' ')[1]);
    const ready = await w.waitForLine(opts.ready ?? /^ready\b/);
    return { root, work: path.join(root, 'work'), w, init, ready };
  } catch (e) {
    if (init) try { process.kill(init, 'SIGKILL'); } catch { /* gone */ }
    await w.kill();
    throw e;
  }
}
