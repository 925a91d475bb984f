// A tracer that dies on purpose at a chosen point of guarded injection (sys/guard.ts), for the
// tests that check the task then puts itself back: `node guard-phase.js PID PHASE`. It seizes
// the process (every thread), guards its main thread and, when there is one, a second thread,
// does what PHASE names, prints "ready" and SIGKILLs itself.
//   entered   guarded, nothing run yet
//   call      after an injected getpid (the task stopped at its marker)
//   scratch   after the scratch memory is mapped
//   sequence  after a sequence of calls (answers in the scratch memory)
//   running   after a sequence the task is let run on (into its epilogue) as the tracer dies
//   thread    the second thread guarded and asked something, the main thread too
//   descriptor  the main task holding a descriptor stasis opened in it (openHigh)

import fs from 'node:fs';
import { SYS } from '../../sys/arch.js';
import { GuardedProcess, GuardedTask } from '../../sys/guard.js';
import { getAffinity } from '../../sys/inject.js';
import { cont, getRegs, getSigmask } from '../../sys/ptrace.js';
import { readSmaps, readStatus } from '../../sys/proc/index.js';
import { SeizedTree } from '../../task/tree.js';

const [pidArg, phase] = process.argv.slice(2);
const pid = Number(pidArg);
const tree = SeizedTree.seize(pid);
const proc = tree.processes[0]!;
const status = readStatus(pid);
const guarded = GuardedProcess.open(pid, { vmas: readSmaps(pid), sigCgt: status.sigCgt, sigPnd: status.sigPnd, shdPnd: status.shdPnd });
if (!guarded) {
  console.log('unguarded');
  process.exit(1);
}
const pinTo = getAffinity(0);
const main = new GuardedTask(guarded, pid, true, getRegs(pid), getSigmask(pid), pinTo);
switch (phase) {
  case 'entered':
    break;
  case 'call':
    main.call(SYS.getpid);
    break;
  case 'scratch':
    main.mapScratch();
    break;
  case 'sequence': {
    main.mapScratch();
    const q = main.questions();
    const room = q.room(24);
    q.ask(SYS.sigaltstack, 0, room.addr);
    q.ask(SYS.getpid);
    q.ask(SYS.gettid);
    q.run();
    break;
  }
  case 'running': {
    main.mapScratch();
    main.callAll([[SYS.getpid], [SYS.gettid]]);
    // Let it go on from its marker stop while the tracer is still there: it runs into its
    // epilogue (and back into its own code) as the tracer dies.
    cont(pid, 0);
    break;
  }
  case 'thread': {
    main.mapScratch();
    const tid = proc.threads[1];
    if (tid === undefined) throw new Error('no second thread');
    const t = new GuardedTask(guarded, tid, false, getRegs(tid), getSigmask(tid), pinTo);
    t.call(SYS.gettid);
    main.call(SYS.getpid);
    break;
  }
  case 'descriptor': {
    main.mapScratch();
    const fd = main.openHigh('/dev/null', 1 /* O_WRONLY */);
    if (fd < 0 || !fs.existsSync(`/proc/${pid}/fd/${fd}`)) throw new Error(`openHigh gave ${fd}`);
    break;
  }
  default:
    throw new Error(`unknown phase ${phase}`);
}
console.log('ready');
process.kill(process.pid, 'SIGKILL');
