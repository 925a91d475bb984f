// What undoes a dump's hold on connections if stasis dies mid-dump (SIGKILL, a crash, the OOM
// killer): a small process of its own session, started with the first connection a dump locks,
// told over a pipe — before each change is made — which sockets go into repair mode and which
// connections get lock rules (or which nftables table is made). When the pipe closes without the dump's word that it let go of
// them itself, it takes each socket back out of repair mode (through a copy of the task's
// descriptor) and removes the rules: the service carries on, nothing is left in the ruleset.
//
// `node watchdog.js` is the process; DumpWatchdog is stasis's end of it.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { pipe, takeTaskFd } from '../sys/native.js';
import { O_CLOEXEC } from '../sys/fcntl.js';
import { RepairSocket } from '../sys/tcp-repair.js';
import { ConnectionLock, NamespaceLock, unlockTables, type LockedConnection, type LockWatchdog } from './network-lock.js';

type Message =
  | { repair: { pid: number; fd: number; reuse: number } }
  | { lock: { family: number; src: string; sport: number; dst: string; dport: number }; netnsOf?: number }
  | { namespace: number }
  | { table: string; netnsOf?: number }
  | { done: true };

/** stasis's end: messages are written synchronously, so each is in the pipe before the change it announces. */
export class DumpWatchdog implements LockWatchdog {
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

  /** The dump let go of everything itself (or leaves the lock for the restore on purpose). */
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

/** The watchdog process: read until the pipe closes; undo unless told done. */
function watch(): void {
  const repairs: { pid: number; fd: number; reuse: number }[] = [];
  const locks = new Map<number | undefined, LockedConnection[]>();
  const namespaces: number[] = [];
  const tables: { table: string; netnsOf?: number }[] = [];
  let done = false;
  let text = '';
  process.stdin.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    let nl;
    while ((nl = text.indexOf('\n')) >= 0) {
      const m = JSON.parse(text.slice(0, nl)) as Message;
      text = text.slice(nl + 1);
      if ('repair' in m) repairs.push(m.repair);
      else if ('namespace' in m) namespaces.push(m.namespace);
      else if ('table' in m) tables.push(m);
      else if ('lock' in m) {
        const l = m.lock;
        const list = locks.get(m.netnsOf) ?? [];
        list.push({ family: l.family, src: Buffer.from(l.src, 'hex'), sport: l.sport, dst: Buffer.from(l.dst, 'hex'), dport: l.dport });
        locks.set(m.netnsOf, list);
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
