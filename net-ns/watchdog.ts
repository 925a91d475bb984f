// What undoes a dump's or a restore's hold on connections if stasis dies in the middle (SIGKILL,
// a crash, the OOM killer): a small process of its own session, started with the first lock a
// dump takes or a restore takes over, told over a pipe — before each change is made — which
// sockets go into repair mode and which connections get lock rules (or which namespace is locked
// whole, which nftables table is made). It holds each namespace it hears of (a descriptor of
// its own), whose tasks may die with stasis. When the pipe closes without stasis's word that it
// let go of them itself, it takes each socket back out of repair mode (through a copy of the
// task's descriptor) and removes the rules: after a dump the service carries on; after a restore
// (whose half-made tasks die with stasis) the peers see a reset rather than a connection hanging;
// nothing is left in the ruleset.
//
// `node watchdog.js` is the process; NetworkWatchdog is stasis's end of it.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { pipe, takeTaskFd } from '../sys/native.js';
import { O_CLOEXEC } from '../sys/fcntl.js';
import { RepairSocket } from '../sys/tcp-repair.js';
import { ConnectionLock, NamespaceLock, unlockTables, type LockedConnection, type LockWatchdog, type Netns } from './network-lock.js';

type Message =
  | { repair: { pid: number; fd: number; reuse: number } }
  | { lock: { family: number; src: string; sport: number; dst: string; dport: number }; netnsOf?: number }
  | { namespace: number }
  | { table: string; netnsOf?: number }
  | { done: true };

/** stasis's end: messages are written synchronously, so each is in the pipe before the change it announces. */
export class NetworkWatchdog implements LockWatchdog {
  private fd?: number;

  private send(m: Message): void {
    if (this.fd === undefined) this.start();
    fs.writeSync(this.fd!, `${JSON.stringify(m)}\n`);
  }

  private start(): void {
    const [readEnd, writeEnd] = pipe(O_CLOEXEC);
    // This module as tsc compiled it (from dist/net-ns/ or from the one-file build in dist/bundle/).
    const child = spawn(process.execPath, [fileURLToPath(new URL('../net-ns/watchdog.js', import.meta.url))], {
      detached: true, stdio: [readEnd, 'ignore', 'ignore'],
    });
    child.unref();
    fs.closeSync(readEnd);
    this.fd = writeEnd;
  }

  /** Socket `fd` of task `pid` is about to enter repair mode (SO_REUSEADDR `reuse` before it). */
  repairing(pid: number, fd: number, reuse: number): void {
    this.send({ repair: { pid, fd, reuse } });
  }

  /**
   * Lock rules for `c` are about to be added in stasis's namespace, or (no `c`) the network
   * namespace of task `netnsOf` is about to be locked whole.
   */
  locking(c: LockedConnection | undefined, netnsOf?: number): void {
    if (!c) {
      this.send({ namespace: netnsOf! });
      return;
    }
    this.send({ lock: { family: c.family, src: c.src.toString('hex'), sport: c.sport, dst: c.dst.toString('hex'), dport: c.dport }, netnsOf });
  }

  /** nftables table `table` is about to be made in the namespace of task `netnsOf` (stasis's when undefined). */
  lockingTable(table: string, netnsOf?: number): void {
    this.send({ table, netnsOf });
  }

  /** stasis let go of everything itself (or a dump leaves the lock for the restore on purpose). */
  done(): void {
    if (this.fd === undefined) return;
    try {
      this.send({ done: true });
    } finally {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

/**
 * The namespace of task `pid` as a file that outlives the task: a descriptor of this process's
 * (the task's own when it cannot be opened).
 */
function held(pid: number | undefined): Netns | undefined {
  if (pid === undefined) return undefined;
  try {
    return `/proc/${process.pid}/fd/${fs.openSync(`/proc/${pid}/ns/net`, 'r')}`;
  } catch {
    return pid;
  }
}

/** The watchdog process: read until the pipe closes; undo unless told done. */
function watch(): void {
  const repairs: { pid: number; fd: number; reuse: number }[] = [];
  const locks = new Map<Netns | undefined, LockedConnection[]>();
  const namespaces: Netns[] = [];
  const tables: { table: string; netnsOf?: Netns }[] = [];
  const heldOf = new Map<number | undefined, Netns | undefined>();
  const netns = (pid: number | undefined) => {
    if (!heldOf.has(pid)) heldOf.set(pid, held(pid));
    return heldOf.get(pid);
  };
  let done = false;
  let text = '';
  process.stdin.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    let nl;
    while ((nl = text.indexOf('\n')) >= 0) {
      const m = JSON.parse(text.slice(0, nl)) as Message;
      text = text.slice(nl + 1);
      if ('repair' in m) repairs.push(m.repair);
      else if ('namespace' in m) namespaces.push(netns(m.namespace)!);
      else if ('table' in m) tables.push({ table: m.table, netnsOf: netns(m.netnsOf) });
      else if ('lock' in m) {
        const l = m.lock;
        const where = netns(m.netnsOf);
        const list = locks.get(where) ?? [];
        list.push({ family: l.family, src: Buffer.from(l.src, 'hex'), sport: l.sport, dst: Buffer.from(l.dst, 'hex'), dport: l.dport });
        locks.set(where, list);
      } else done = true;
    }
  });
  process.stdin.on('end', () => {
    if (done) return;
    for (const r of repairs) {
      try {
        const s = new RepairSocket(takeTaskFd(r.pid, r.fd), `socket ${r.fd} of ${r.pid}`);
        s.reuse = r.reuse;
        s.tryRepairOff();
        fs.closeSync(s.fd);
      } catch {
        // the task or its descriptor is gone: nothing to give back
      }
    }
    for (const [netnsOf, conns] of locks) new ConnectionLock('iptables', netnsOf).adopt(conns).release();
    for (const netnsOf of namespaces) NamespaceLock.unlock(netnsOf);
    for (const t of tables) unlockTables([t.table], t.netnsOf);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) watch();
