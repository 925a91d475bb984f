// Each live process's own attributes, once every process exists: fs context (cwd, root, umask),
// SIGCHLD's action, interval timers, resource limits, personality, child-subreaper flag and OOM
// score. POSIX timers (which may signal one thread), credentials, seccomp and the rest of what is
// per thread: threads.ts.

import fs from 'node:fs';
import { imageFileName } from '../../images/index.js';
import { applying } from '../errors.js';
import { SYS } from '../../sys/arch.js';
import { SIGCHLD } from '../../sys/ptrace.js';
import { restoreFs } from '../fs.js';
import { restoreRlimits } from '../rlimits.js';
import { restoreSigactions } from '../sigactions.js';
import { restoreItimers } from '../timers.js';
import type { RestoreRun, Restoring } from './state.js';
import { sigactionsOf } from './tree.js';

const PER_LINUX_MASK = 0xffffffff;
export const PR_SET_CHILD_SUBREAPER = 36;

export function restoreAttributes(run: RestoreRun, t: Restoring): void {
  const { inj, p } = t;
  const task = `task ${p.pid}`;
  // The umask last: what the restore creates for the task (a socket's file) is made under
  // stasis's, which every task has until then.
  applying(imageFileName('FS', p.pid), task, () => restoreFs(inj, p.fs!, (id) => run.regFile(id), { ...t.fsHas, umask: run.own.umask },
    (n) => run.img.extraImage(n)));
  const tc = p.cores.get(p.pid)!.tc;
  const core = imageFileName('CORE', p.pid);
  applying(core, `${task}: SIGCHLD action`,
    () => restoreSigactions(inj, sigactionsOf(p), { only: (sig) => sig === SIGCHLD, unconditionally: true }));
  applying(core, `${task}: interval timers`, () => restoreItimers(inj, tc.timers));
  applying(core, `${task}: resource limits`, () => restoreRlimits(t.hpid, tc.rlimits));
  // Personality and OOM score are stasis's (inherited through the seed) until set.
  const personality = Number(tc.personality ?? 0) & PER_LINUX_MASK;
  if (personality !== run.own.personality) {
    applying(core, `${task}: personality 0x${personality.toString(16)}`, () => inj.callChecked(SYS.personality, personality));
  }
  if (tc.child_subreaper) applying(core, `${task}: child subreaper`, () => inj.callChecked(SYS.prctl, PR_SET_CHILD_SUBREAPER, 1));
  if (tc.oom_score_adj !== undefined && Number(tc.oom_score_adj) !== run.own.oomScoreAdj) {
    applying(core, `${task}: oom_score_adj ${tc.oom_score_adj}`,
      () => fs.writeFileSync(`/proc/${t.hpid}/oom_score_adj`, String(tc.oom_score_adj)));
  }
}
