// The task's filesystem context (fs-PID.img): working directory, root, umask. A working
// directory that was removed is kept as a ghost directory (files/reg.ts), made again for the
// restore, entered, and removed again.

import { SYS } from '../sys/arch.js';
import type { Injector } from '../sys/inject.js';
import { readCwd, readRoot, readStatus } from '../sys/proc/index.js';
import { dumpPathFile, mountIdOf, openInTask, openRegEntry, type RegOpenContext } from '../files/reg.js';
import type { FileTable } from '../files/table.js';
import { O_DIRECTORY, O_PATH, O_RDONLY } from '../sys/fcntl.js';

export interface FsEntry { cwd_id: number; root_id: number; umask?: number }


/** `umask`: the task's, when the caller has read its status already. */
export function dumpFs(pid: number, files: FileTable, umask = readStatus(pid).umask, mountIds = false): FsEntry {
  const dir = (which: 'cwd' | 'root') => {
    const p = which === 'cwd' ? readCwd(pid) : readRoot(pid);
    if (which === 'root' && p.endsWith(' (deleted)')) throw new Error(`the root of task ${pid} was deleted`);
    const d = dumpPathFile(pid, p, `/proc/${pid}/${which}`, O_RDONLY, 0n, files.remapContext(), `the ${which} of task ${pid}`);
    // In a tree with nested mount namespaces, the mount (so the namespace) it is on, as criu's
    // restore wants it (stasis's restores them in the task, which is in its namespace already).
    const mntId = mountIds ? mountIdOf(`/proc/${pid}/${which}`) : 0;
    if (mntId) d.entry.mnt_id = mntId;
    return files.add(d);
  };
  return { cwd_id: dir('cwd'), root_id: dir('root'), ...(umask !== undefined ? { umask } : {}) };
}

/**
 * Sets what of `e` the task does not have already (`has`: what it inherited or was given): cwd and
 * root (each process has its own file entries for them: compared by path), umask. `imageEntries`:
 * the dump's images, for a removed cwd.
 */
export function restoreFs(inj: Injector, e: Partial<FsEntry>, regFile: (id: number) => Record<string, unknown>,
  has: Partial<FsEntry> = {}, imageEntries?: RegOpenContext['imageEntries']): void {
  const same = (a: number | undefined, b: number | undefined) => a !== undefined && b !== undefined && regFile(a).name === regFile(b).name;
  if (e.cwd_id !== undefined && e.root_id !== undefined && !(same(e.cwd_id, has.cwd_id) && same(e.root_id, has.root_id))) {
    // Both paths are as stasis sees them, so the cwd is opened before any chroot.
    const cwdFile = regFile(e.cwd_id);
    const cwd = imageEntries ? openRegEntry({ inj, imageEntries, regFile }, cwdFile, O_PATH | O_DIRECTORY)
      : openInTask(inj, String(cwdFile.name), O_PATH | O_DIRECTORY);
    try {
      const root = String(regFile(e.root_id).name);
      if (root !== '/') {
        const fd = openInTask(inj, root, O_PATH | O_DIRECTORY);
        try {
          inj.callChecked(SYS.fchdir, fd);
          inj.callChecked(SYS.chroot, inj.writeScratch(Buffer.from('.\0')));
        } finally {
          inj.call(SYS.close, fd);
        }
      }
      inj.callChecked(SYS.fchdir, cwd);
    } finally {
      inj.call(SYS.close, cwd);
    }
  }
  if (e.umask !== undefined && e.umask !== has.umask) inj.callChecked(SYS.umask, e.umask);
}
