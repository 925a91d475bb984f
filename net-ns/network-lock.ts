// The network lock: from the moment an established TCP connection is dumped until its restored
// copy is live, the peer's packets (and anything the socket would send) are dropped silently, so
// that the kernel never answers a connection it does not know with a reset.
//
// The rules are CRIU's own (its iptables method), so that either tool lifts the other's lock: per
// connection, one DROP rule inserted at the head of INPUT and one of OUTPUT, matching the
// connection's addresses and ports, for packets without the repair mark 0xC114 (what a restored
// socket may send before the lock is lifted carries that mark). iptables or ip6tables by family,
// through their -restore tools: one call per change. The rules live in the filter table of the
// connections' network namespace; the restore removes them from where the connection now is.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { AF } from '../sys/socket.js';

export interface LockedConnection {
  family: number;
  src: Buffer;
  sport: number;
  dst: Buffer;
  dport: number;
}

export type LockMethod = 'iptables' | 'nftables' | 'skip';

/** The inventory's network_lock_method values (CRIU's internal enum). */
export const LOCK_METHOD_CODE: Record<LockMethod, number> = { iptables: 0, nftables: 1, skip: 2 };

function addressText(family: number, b: Buffer): string {
  if (family === AF.INET) return `${Array.from(b).join('.')}/32`;
  // v4-mapped IPv6 addresses are matched by ip6tables as they are.
  return `${Array.from({ length: 8 }, (_, i) => b.readUInt16BE(2 * i).toString(16)).join(':')}/128`;
}

function restoreTool(family: number): string {
  return family === AF.INET ? 'iptables-restore' : 'ip6tables-restore';
}

/**
 * `argv` run in the network namespace of task `netnsOf` (stasis's own when undefined), `input`
 * its stdin; its stdout. A failure throws the first line it wrote on stderr.
 */
function inNetns(argv: string[], netnsOf?: number, input?: string): string {
  const full = netnsOf ? ['nsenter', `--net=/proc/${netnsOf}/ns/net`, ...argv] : argv;
  try {
    return execFileSync(full[0]!, full.slice(1), { input, encoding: 'utf8', stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error((e as { stderr?: string }).stderr?.trim().split('\n')[0] || (e as Error).message);
  }
}

/** An iptables-restore script (`tool`: iptables-restore or ip6tables-restore) added to the ruleset. */
function run(tool: string, script: string, netnsOf?: number): void {
  try {
    inNetns([tool, '-w', '--noflush'], netnsOf, script);
  } catch (e) {
    throw new Error(`network lock: ${tool} failed: ${(e as Error).message}`);
  }
}

/** The repair mark: packets carrying it pass the lock (CRIU's SOCCR_MARK). */
export const REPAIR_MARK = 0xc114;

/** The DROP rules of one connection, both directions, as CRIU writes them (`op`: -I or -D). */
function connectionRules(op: '-I' | '-D', c: LockedConnection): string[] {
  const local = addressText(c.family, c.src);
  const remote = addressText(c.family, c.dst);
  const rule = (chain: string, s: string, sp: number, d: string, dp: number) =>
    `${op} ${chain} -p tcp -m mark ! --mark ${REPAIR_MARK} -s ${s} --sport ${sp} -d ${d} --dport ${dp} -j DROP`;
  return [rule('INPUT', remote, c.dport, local, c.sport), rule('OUTPUT', local, c.sport, remote, c.dport)];
}

function connectionKey(c: LockedConnection): string {
  return `${familyOf(c)} ${c.src.toString('hex')}:${c.sport} ${c.dst.toString('hex')}:${c.dport}`;
}

function familyOf(c: LockedConnection): number {
  return c.family === AF.INET ? AF.INET : AF.INET6;
}

/**
 * Locked connections: in stasis's own network namespace one by one (CRIU's per-connection rules)
 * as a dump reaches them, or all at once from a dump's images to unlock them; in the namespace
 * of task `netnsOf` (a tree's own), the whole namespace, once (NamespaceLock).
 */
export class ConnectionLock {
  private readonly held: LockedConnection[] = [];

  /** `watchdog`: told of each connection before it is locked (a dump's; net-ns/watchdog.ts). */
  constructor(readonly method: LockMethod, private readonly netnsOf?: number,
    private readonly watchdog?: { locking(c: LockedConnection | undefined, netnsOf?: number): void }) {
    if (method === 'nftables') throw new Error('network lock: the nftables method is not supported yet (use --network-lock iptables or skip)');
  }

  get locked(): boolean {
    return this.held.length > 0;
  }

  /**
   * Lock every connection of `conns` at once (stasis's namespace: one call per family, whatever
   * their number); later add()s of them are then nothing to do.
   */
  addAll(conns: readonly LockedConnection[]): void {
    if (this.method === 'skip' || this.netnsOf !== undefined) return;
    const fresh = conns.filter((c) => !this.keys.has(connectionKey(c)));
    for (const family of [AF.INET, AF.INET6]) {
      const mine = fresh.filter((c) => familyOf(c) === family);
      if (!mine.length) continue;
      for (const c of mine) this.watchdog?.locking(c, undefined);
      run(restoreTool(family), ['*filter', ...mine.flatMap((c) => connectionRules('-I', c)), 'COMMIT', ''].join('\n'));
      for (const c of mine) {
        this.held.push(c);
        this.keys.add(connectionKey(c));
      }
    }
  }

  private readonly keys = new Set<string>();

  /** Lock `c`: its own rules in stasis's namespace; in a tree's own, the whole namespace once. */
  add(c: LockedConnection): void {
    if (this.method === 'skip' || this.keys.has(connectionKey(c))) return;
    if (this.netnsOf !== undefined) {
      if (!this.namespaceLock) {
        this.watchdog?.locking(undefined, this.netnsOf);
        this.namespaceLock = NamespaceLock.lock(this.netnsOf);
      }
    } else {
      this.watchdog?.locking(c, this.netnsOf);
      run(restoreTool(familyOf(c)), ['*filter', ...connectionRules('-I', c), 'COMMIT', ''].join('\n'), this.netnsOf);
    }
    this.held.push(c);
    this.keys.add(connectionKey(c));
  }

  private namespaceLock?: NamespaceLock;

  /** Connections locked by a dump (its images tell which), to be unlocked. */
  adopt(conns: readonly LockedConnection[]): this {
    this.held.push(...conns);
    return this;
  }

  /**
   * Lift the lock; never throws: rules already gone are skipped (the ruleset is read first),
   * one that cannot be removed is reported through `warn`.
   */
  release(warn?: (msg: string) => void): void {
    const conns = this.held.splice(0);
    this.keys.clear();
    if (this.namespaceLock) {
      this.namespaceLock.release(warn);
      this.namespaceLock = undefined;
      return;
    }
    for (const family of [AF.INET, AF.INET6]) {
      const mine = conns.filter((c) => familyOf(c) === family);
      if (!mine.length) continue;
      try {
        const present = lockRulesPresent(family, this.netnsOf);
        const rules = mine.flatMap((c) => connectionRules('-D', c).filter((_, i) => present.has(ruleKey(i === 0 ? 'INPUT' : 'OUTPUT', c))));
        if (rules.length) run(restoreTool(family), ['*filter', ...rules, 'COMMIT', ''].join('\n'), this.netnsOf);
      } catch (e) {
        warn?.((e as Error).message);
      }
    }
  }
}

/** A lock rule as chain, then the connection as the rule matches it (its source first). */
function ruleKey(chain: 'INPUT' | 'OUTPUT', c: LockedConnection): string {
  const local = `${c.src.toString('hex')}:${c.sport}`;
  const remote = `${c.dst.toString('hex')}:${c.dport}`;
  return chain === 'INPUT' ? `INPUT ${remote} ${local}` : `OUTPUT ${local} ${remote}`;
}

/** An address as iptables-save prints it (a.b.c.d or IPv6 text, with its /prefix) as bytes. */
function addressBytes(text: string): Buffer {
  let addr = text.replace(/\/\d+$/, '');
  if (!addr.includes(':')) return Buffer.from(addr.split('.').map(Number));
  // A v4-mapped address ends in dotted IPv4 (::ffff:127.0.0.1): as two groups.
  addr = addr.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a, b, c, d) =>
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`);
  const [head, tail] = addr.includes('::') ? addr.split('::') as [string, string] : [addr, undefined];
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...new Array(8 - h.length - tl.length).fill('0'), ...tl];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g || '0', 16), 2 * i));
  return b;
}

/** The lock rules in the filter table now (one iptables-save), by ruleKey. */
function lockRulesPresent(family: number, netnsOf?: number): Set<string> {
  const tool = family === AF.INET ? 'iptables-save' : 'ip6tables-save';
  let out: string;
  try {
    out = inNetns([tool, '-t', 'filter'], netnsOf);
  } catch {
    return new Set(); // no such table (nothing ever locked there)
  }
  const keys = new Set<string>();
  const re = new RegExp(`^-A (INPUT|OUTPUT) -s (\\S+) -d (\\S+) -p tcp -m mark ! --mark 0x${REPAIR_MARK.toString(16)} -m tcp --sport (\\d+) --dport (\\d+) -j DROP$`);
  for (const line of out.split('\n')) {
    const m = re.exec(line);
    if (m) keys.add(`${m[1]} ${addressBytes(m[2]!).toString('hex')}:${m[4]} ${addressBytes(m[3]!).toString('hex')}:${m[5]}`);
  }
  return keys;
}

const NAMESPACE_CHAIN = 'STASIS-LOCK';

/**
 * A whole network namespace locked (a container's, or one a runtime handed over): everything in
 * and out is dropped but what carries the repair mark. A dump of a tree with a namespace of its
 * own locks it so when it meets the first established connection (one step, however many
 * connections: CRIU does the same); a restore into such a namespace locks it before the first
 * socket is made — a peer's retransmission must not meet a namespace that answers with a reset —
 * and lifts it (its own and a dump's left in the same namespace) once the connections are live.
 * Locking a namespace locked already changes nothing; unlocking removes every jump to the
 * chain (a killed run may have left more than one), then it.
 */
export class NamespaceLock {
  private constructor(private readonly netnsOf: number) {}

  static lock(netnsOf: number): NamespaceLock {
    const rules = ['*filter', `:${NAMESPACE_CHAIN} - [0:0]`, `-I INPUT -j ${NAMESPACE_CHAIN}`, `-I OUTPUT -j ${NAMESPACE_CHAIN}`,
      `-A ${NAMESPACE_CHAIN} -m mark --mark ${REPAIR_MARK} -j ACCEPT`, `-A ${NAMESPACE_CHAIN} -j DROP`, 'COMMIT'];
    const lock = new NamespaceLock(netnsOf);
    // Both families at once, in one process entering the namespace once (each iptables call
    // costs some 10-15 ms here: the lock is on the path of every connection's downtime).
    const feed = `printf '%s\\n' ${rules.map((r) => `'${r}'`).join(' ')}`;
    // A namespace locked already (a dump's lock, left for the restore into the same namespace)
    // stays as it is: one jump to the chain, lifted in one step.
    const one = (t: string) => `(${t} -w -n -L ${NAMESPACE_CHAIN} >/dev/null 2>&1 || ${feed} | ${t}-restore -w --noflush)`;
    const script = `${one('iptables')} & p4=$!; ${one('ip6tables')} & p6=$!; wait $p4 && wait $p6`;
    try {
      inNamespaceShell(script, netnsOf);
    } catch (e) {
      lock.release();
      throw new Error(`network lock: ${(e as Error).message}`);
    }
    return lock;
  }

  /** Lift it; never throws (`warn` hears of a lock that could not be lifted). */
  release(warn?: (msg: string) => void): void {
    NamespaceLock.unlock(this.netnsOf, warn);
  }

  /**
   * Lift the lock of the network namespace of task `netnsOf`, whoever took it, if it is there:
   * every jump to the chain (one per lock taken), then the chain; both families at once.
   */
  static unlock(netnsOf: number | undefined, warn?: (msg: string) => void): void {
    const c = NAMESPACE_CHAIN;
    // The usual case first (one lock: one jump each), in one call; otherwise read the rules.
    const fixed = `printf '%s\\n' '*filter' '-D INPUT -j ${c}' '-D OUTPUT -j ${c}' '-F ${c}' '-X ${c}' COMMIT`;
    const one = (t: string) => `(${fixed} | ${t}-restore -w --noflush 2>/dev/null && exit 0; `
      + `r=$(${t} -w -S) || exit 0; printf '%s\\n' "$r" | grep -qx -- '-N ${c}' || exit 0; `
      + `{ echo '*filter'; printf '%s\\n' "$r" | sed -n 's/^-A \\(INPUT\\|OUTPUT\\) -j ${c}$/-D \\1 -j ${c}/p'; `
      + `echo '-F ${c}'; echo '-X ${c}'; echo COMMIT; } | ${t}-restore -w --noflush)`;
    try {
      inNamespaceShell(`${one('iptables')} & p4=$!; ${one('ip6tables')} & p6=$!; wait $p4 && wait $p6`, netnsOf);
    } catch (e) {
      if (netnsOf === undefined || fs.existsSync(`/proc/${netnsOf}`)) warn?.(`network lock not lifted: ${(e as Error).message}`);
    }
  }
}

/** `sh -c SCRIPT` in the network namespace of task `netnsOf` (stasis's own when undefined). */
function inNamespaceShell(script: string, netnsOf?: number): void {
  inNetns(['sh', '-c', script], netnsOf);
}
