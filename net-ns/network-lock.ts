// The network lock: from the moment an established TCP connection is dumped until its restored
// copy is live, the peer's packets (and anything the socket would send) are dropped silently, so
// that the kernel never answers a connection it does not know with a reset.
//
// The rules are CRIU's own, so that either tool lifts the other's lock. Its iptables method: per
// connection, one DROP rule inserted at the head of INPUT and one of OUTPUT, matching the
// connection's addresses and ports, for packets without the repair mark 0xC114 (what a restored
// socket may send before the lock is lifted carries that mark). iptables or ip6tables by the
// family on the wire (a v4-mapped IPv6 connection is IPv4 there), through their -restore tools:
// one call per change. The rules live in the filter table of the
// connections' network namespace; the restore removes them from where the connection now is.
//
// Its nftables method: one table of the run, `inet CRIU-<run id>` (the dump's run id, which the
// inventory keeps as dump_criu_run_id, cut as CRIU cuts it), holding input and output chains
// that accept what carries the repair mark and drop what the sets conns4/conns6 hold (each
// connection once per direction; v4-mapped IPv6 ones as IPv4, as they go on the wire); for a
// whole namespace, the same chains with policy drop and no sets. One `nft -f -` per change, both
// families at once; unlocking deletes the table.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { AF } from '../sys/socket.js';
import { readStat } from '../sys/proc/index.js';

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

/** An address as iptables and nft write it (`family`: as it goes on the wire, see onWire). */
function addressText(family: number, b: Buffer): string {
  if (family === AF.INET) return Array.from(b).join('.');
  return Array.from({ length: 8 }, (_, i) => b.readUInt16BE(2 * i).toString(16)).join(':');
}

function v4Mapped(b: Buffer): boolean {
  return b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b.readUInt16BE(10) === 0xffff;
}

/**
 * `c` as its packets travel: an IPv6 socket's connection between v4-mapped addresses is IPv4 on
 * the wire, which iptables (not ip6tables) sees, as CRIU locks it.
 */
function onWire(c: LockedConnection): LockedConnection {
  if (c.family === AF.INET || !v4Mapped(c.src) || !v4Mapped(c.dst)) return c;
  return { ...c, family: AF.INET, src: c.src.subarray(12), dst: c.dst.subarray(12) };
}

function restoreTool(family: number): string {
  return family === AF.INET ? 'iptables-restore' : 'ip6tables-restore';
}

/**
 * A network namespace: a task's (its PID), or a namespace file (a path: the watchdog's own
 * descriptor of one whose tasks may be gone); undefined: stasis's own.
 */
export type Netns = number | string;

function netnsFile(n: Netns): string {
  return typeof n === 'number' ? `/proc/${n}/ns/net` : n;
}

/** Whether `n` still exists (a lock that could not be lifted from a namespace gone is no failure). */
function netnsExists(n: Netns | undefined): boolean {
  return n === undefined || fs.existsSync(typeof n === 'number' ? `/proc/${n}` : n);
}

/**
 * `argv` run in the network namespace `netnsOf` (stasis's own when undefined), `input` its
 * stdin; its stdout. A failure throws the first line it wrote on stderr.
 */
function inNetns(argv: string[], netnsOf?: Netns, input?: string): string {
  const full = netnsOf !== undefined ? ['nsenter', `--net=${netnsFile(netnsOf)}`, ...argv] : argv;
  try {
    return execFileSync(full[0]!, full.slice(1), { input, encoding: 'utf8', stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error((e as { stderr?: string }).stderr?.trim().split('\n')[0] || (e as Error).message);
  }
}

/** An iptables-restore script (`tool`: iptables-restore or ip6tables-restore) added to the ruleset. */
function run(tool: string, script: string, netnsOf?: Netns): void {
  try {
    inNetns([tool, '-w', '--noflush'], netnsOf, script);
  } catch (e) {
    throw new Error(`network lock: ${tool} failed: ${(e as Error).message}`);
  }
}

/** The repair mark: packets carrying it pass the lock (CRIU's SOCCR_MARK). */
export const REPAIR_MARK = 0xc114;

/** The DROP rules of one connection, both directions, as CRIU writes them (`op`: -I or -D). */
function connectionRules(op: '-I' | '-D', conn: LockedConnection): string[] {
  const c = onWire(conn);
  const prefix = c.family === AF.INET ? '/32' : '/128';
  const local = addressText(c.family, c.src) + prefix;
  const remote = addressText(c.family, c.dst) + prefix;
  const rule = (chain: string, s: string, sp: number, d: string, dp: number) =>
    `${op} ${chain} -p tcp -m mark ! --mark ${REPAIR_MARK} -s ${s} --sport ${sp} -d ${d} --dport ${dp} -j DROP`;
  return [rule('INPUT', remote, c.dport, local, c.sport), rule('OUTPUT', local, c.sport, remote, c.dport)];
}

function connectionKey(c: LockedConnection): string {
  return `${familyOf(c)} ${c.src.toString('hex')}:${c.sport} ${c.dst.toString('hex')}:${c.dport}`;
}

function familyOf(c: LockedConnection): number {
  return onWire(c).family === AF.INET ? AF.INET : AF.INET6;
}

/**
 * Locked connections: in stasis's own network namespace one by one (CRIU's per-connection rules)
 * as a dump reaches them, or all at once from a dump's images to unlock them; in the namespace
 * of task `netnsOf` (a tree's own), the whole namespace, once (NamespaceLock).
 */
export class ConnectionLock {
  private readonly held: LockedConnection[] = [];

  /**
   * `watchdog`: told of each connection (or nftables table) before it is locked (a dump's;
   * net-ns/watchdog.ts). `table`: the nftables method's table (lockTable(run id)), which
   * `comment` names the owner of (a restore's: see OWNED).
   */
  constructor(readonly method: LockMethod, private readonly netnsOf?: Netns,
    private readonly watchdog?: LockWatchdog, private readonly table?: string, private readonly comment?: string) {
    if (method === 'nftables' && !table) throw new Error('network lock: the nftables method needs its table');
    if (method === 'nftables' && !nftTool()) throw new Error(NO_NFT);
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
    if (this.method === 'nftables') {
      this.addToTable(fresh);
      return;
    }
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

  /** Whether the nftables table is made (then connections are only added to its sets). */
  private tableMade = false;

  /** nftables: the table made at the first connections, theirs and later ones added to its sets. */
  private addToTable(conns: readonly LockedConnection[]): void {
    if (!conns.length) return;
    const table = this.table!;
    if (!this.tableMade) this.watchdog?.lockingTable(table, this.netnsOf);
    const lines = [...(this.tableMade ? [] : connectionTable(table, this.comment)), ...tableElements(table, conns)];
    nft(lines, this.netnsOf);
    this.tableMade = true;
    for (const c of conns) {
      this.held.push(c);
      this.keys.add(connectionKey(c));
    }
  }

  /** Lock `c`: its own rules in stasis's namespace; in a tree's own, the whole namespace once. */
  add(c: LockedConnection): void {
    if (this.method === 'skip' || this.keys.has(connectionKey(c))) return;
    if (this.netnsOf !== undefined) {
      if (!this.namespaceLock) {
        if (this.method === 'nftables') this.watchdog?.lockingTable(this.table!, this.netnsOf);
        else this.watchdog?.locking(undefined, this.netnsOf);
        this.namespaceLock = NamespaceLock.lock(this.netnsOf, this.method === 'nftables' ? { table: this.table!, comment: this.comment } : undefined);
      }
    } else if (this.method === 'nftables') {
      this.addToTable([c]);
      return;
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
    if (this.method === 'nftables') {
      if (this.tableMade || conns.length) unlockTables([this.table!], this.netnsOf, warn);
      this.tableMade = false;
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
function ruleKey(chain: 'INPUT' | 'OUTPUT', conn: LockedConnection): string {
  const c = onWire(conn);
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
function lockRulesPresent(family: number, netnsOf?: Netns): Set<string> {
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

/** A namespace's nftables lock: its table, and its owner's comment (see ownerComment). */
export interface NamespaceTable {
  table: string;
  comment?: string;
}

/**
 * A whole network namespace locked (a container's, or one a runtime handed over): everything in
 * and out is dropped but what carries the repair mark. A dump of a tree with a namespace of its
 * own locks it so when it meets the first established connection (one step, however many
 * connections: CRIU does the same); a restore into such a namespace locks it before the first
 * socket is made — a peer's retransmission must not meet a namespace that answers with a reset —
 * and lifts it (its own and a dump's left in the same namespace) once the connections are live.
 * iptables: locking a namespace locked already changes nothing; unlocking removes every jump to
 * the chain (a killed run may have left more than one), then it. nftables: each run's own table
 * (see RestoreLock for the restore's).
 */
export class NamespaceLock {
  private constructor(private readonly netnsOf: Netns, private readonly nftables?: NamespaceTable) {}

  /**
   * Lock the network namespace of task `netnsOf`: by iptables (our chain), or with `nftables`,
   * by that table (CRIU's shape).
   */
  static lock(netnsOf: Netns, nftables?: NamespaceTable): NamespaceLock {
    if (nftables) {
      const lock = new NamespaceLock(netnsOf, nftables);
      nft(namespaceTable(nftables.table, nftables.comment), netnsOf);
      return lock;
    }
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
    if (this.nftables) unlockTables([this.nftables.table], this.netnsOf, warn);
    else NamespaceLock.unlock(this.netnsOf, warn);
  }

  /**
   * Lift the iptables lock of the network namespace of task `netnsOf`, whoever took it, if it
   * is there: every jump to the chain (one per lock taken), then the chain; both families at once.
   */
  static unlock(netnsOf: Netns | undefined, warn?: (msg: string) => void): void {
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
      if (netnsExists(netnsOf)) warn?.(`network lock not lifted: ${(e as Error).message}`);
    }
  }
}

/** What a dump's watchdog hears of before each lock is taken (net-ns/watchdog.ts's NetworkWatchdog). */
export interface LockWatchdog {
  /** Lock rules for `c` in stasis's namespace, or (no `c`) the namespace of task `netnsOf` whole (iptables). */
  locking(c: LockedConnection | undefined, netnsOf?: Netns): void;
  /** nftables table `table` is about to be made in the namespace of task `netnsOf` (stasis's when undefined). */
  lockingTable(table: string, netnsOf?: Netns): void;
}

/**
 * A run's id (CRIU's criu_run_id, naming its nftables table): a random (version 4) UUID from the
 * kernel; node:crypto's would load all of node's crypto for one call (some 5 ms of a command's start).
 */
export function newRunId(): string {
  return fs.readFileSync('/proc/sys/kernel/random/uuid', 'utf8').trim();
}

/**
 * The nftables table of run `runId`'s lock. CRIU names it `inet CRIU-<run id>` in a buffer of 32
 * bytes: the name keeps its first 26 characters (the tools find each other's tables by it).
 */
export function lockTable(runId: string): string {
  return `CRIU-${runId}`.slice(0, 26);
}

/**
 * The comment of a table a restore makes: its owner (pid and start time), so that a later run
 * lifts it once that process is gone (a restore killed while it held the lock). A dump's tables
 * carry none (CRIU's shape): its watchdog lifts them if it is killed, and a finished dump leaves
 * them for the restore.
 */
export function ownerComment(): string {
  return `stasis restore ${process.pid} ${startTime(process.pid)}`;
}
const OWNED = /^table inet (CRIU-\S+) \{\n\s*comment "stasis restore (\d+) (\d+)"/gm;

function startTime(pid: number): string | undefined {
  try {
    return String(readStat(pid).startTime);
  } catch {
    return undefined; // gone
  }
}

const NO_NFT = 'network lock: the nftables method needs the nft tool (Debian\'s package nftables), which is not installed';

/**
 * Where `nft` is (Debian's package nftables), or undefined: looked for where the system keeps
 * it, not on $PATH (where a runtime or npm may put another program of that name first).
 */
export function nftTool(): string | undefined {
  return ['/usr/sbin', '/sbin', '/usr/local/sbin', '/usr/bin', '/bin'].map((d) => `${d}/nft`).find((f) => fs.existsSync(f));
}

/** An nft script (`lines`) run as one transaction in the namespace of task `netnsOf`. */
function nft(lines: string[], netnsOf?: Netns): void {
  const tool = nftTool();
  if (!tool) throw new Error(NO_NFT);
  try {
    inNetns([tool, '-f', '-'], netnsOf, `${lines.join('\n')}\n`);
  } catch (e) {
    throw new Error(`network lock: nft failed: ${(e as Error).message}`);
  }
}

/** The head of a lock table and its two base chains, each accepting what carries the repair mark. */
function lockChains(table: string, policy: 'accept' | 'drop', comment?: string): string[] {
  const t = `inet ${table}`;
  const chain = (name: string, hook: string) => [`add chain ${t} ${name} { type filter hook ${hook} priority 0; policy ${policy}; }`,
    `add rule ${t} ${name} meta mark 0x${REPAIR_MARK.toString(16)} accept`];
  return [`add table ${t}${comment ? ` { comment "${comment}"; }` : ''}`, ...chain('output', 'output'), ...chain('input', 'input')];
}

/** A whole namespace's lock table: nothing in or out but what carries the repair mark. */
function namespaceTable(table: string, comment?: string): string[] {
  return lockChains(table, 'drop', comment);
}

/**
 * Whether this machine can lock with nftables: the nft tool, and a kernel that makes a table
 * with a set of concatenated keys (what the lock's sets are), tried in a network namespace of
 * its own; throws saying what is missing.
 */
export function probeNftables(): void {
  const tool = nftTool();
  if (!tool) throw new Error('no nft tool (Debian\'s package nftables)');
  try {
    execFileSync('unshare', ['--net', tool, '-f', '-'], { input: `${connectionTable('CRIU-probe').join('\n')}\n`, stdio: ['pipe', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error(`nft cannot make the lock's table: ${(e as { stderr?: Buffer }).stderr?.toString().trim().split('\n')[0] || (e as Error).message}`);
  }
}

/** A per-connection lock table: its chains drop what matches the sets of connections. */
function connectionTable(table: string, comment?: string): string[] {
  const t = `inet ${table}`;
  const [head, ...chains] = lockChains(table, 'accept', comment);
  const drops = (chain: string) => [`add rule ${t} ${chain} ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop`,
    `add rule ${t} ${chain} ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop`];
  return [head!,
    `add set ${t} conns4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; }`,
    `add set ${t} conns6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; }`,
    chains[0]!, chains[1]!, ...drops('output'), chains[2]!, chains[3]!, ...drops('input')];
}

/** The set elements of `conns`: each once as it comes in, once as it goes out. */
function tableElements(table: string, conns: readonly LockedConnection[]): string[] {
  const sets: Record<string, string[]> = { conns4: [], conns6: [] };
  for (const conn of conns) {
    const c = onWire(conn);
    const local = addressText(c.family, c.src);
    const remote = addressText(c.family, c.dst);
    sets[c.family === AF.INET ? 'conns4' : 'conns6']!.push(`${remote} . ${c.dport} . ${local} . ${c.sport}`,
      `${local} . ${c.sport} . ${remote} . ${c.dport}`);
  }
  return Object.entries(sets).filter(([, e]) => e.length).map(([set, e]) => `add element inet ${table} ${set} { ${e.join(', ')} }`);
}

/**
 * Delete lock tables `tables` from the namespace of task `netnsOf`, those present (added and
 * deleted in one transaction: one absent is no error); never throws (`warn` hears of a
 * failure). With `sweep`, then also the tables of restores no longer running (OWNED).
 */
export function unlockTables(tables: readonly string[], netnsOf: Netns | undefined, warn?: (msg: string) => void, sweep = false): void {
  try {
    // (each added first: deleting one that is absent would fail the whole transaction)
    const drop = (ts: readonly string[]) => nft([...new Set(ts)].flatMap((t) => [`add table inet ${t}`, `delete table inet ${t}`]), netnsOf);
    drop(tables);
    if (!sweep) return;
    const stale = [...inNetns([nftTool()!, '-t', 'list', 'ruleset', 'inet'], netnsOf).matchAll(OWNED)]
      .filter((m) => startTime(Number(m[2])) !== m[3]).map((m) => m[1]!);
    if (stale.length) drop(stale);
  } catch (e) {
    if (netnsExists(netnsOf)) warn?.(`network lock not lifted: ${(e as Error).message}`);
  }
}

/** `sh -c SCRIPT` in the network namespace of task `netnsOf` (stasis's own when undefined). */
function inNamespaceShell(script: string, netnsOf?: Netns): void {
  inNetns(['sh', '-c', script], netnsOf);
}

/** What a dump left locked, as its images tell. */
export interface DumpLock {
  /** The inventory's network_lock_method. */
  method: LockMethod;
  /** The dump's run id (dump_criu_run_id), which names its nftables table. */
  runId?: string;
  /** Whether the tree was in the dumper's network namespace (its connections locked one by one). */
  hostNet: boolean;
  /** Its established connections (the dump's lock holds them). */
  conns: LockedConnection[];
}

/** The inventory's network_lock_method as a method (CRIU's images may hold no field: iptables). */
export function lockMethodOf(code: number | undefined): LockMethod {
  return (Object.keys(LOCK_METHOD_CODE) as LockMethod[]).find((m) => LOCK_METHOD_CODE[m] === (code ?? 0)) ?? 'iptables';
}

/**
 * A restore's hold on the network, and the dump's it takes over. Before the first socket is
 * made the restore locks where the connections come back: a tree's own namespace whole (by the
 * dump's method, iptables unless the images say nftables); in stasis's namespace, the
 * connections with nftables (a table of the restore's own: on another host the dump's is not
 * there), while the dump's iptables rules are simply left to hold them. Once the connections are
 * live, or the restore failed, release() lifts the restore's lock and the dump's, where the tree
 * is — and with nftables, tables left by restores killed since (OWNED).
 */
export class RestoreLock {
  private own?: ConnectionLock | NamespaceLock;
  /** The tree's own network namespace, by a task in it; undefined: stasis's. */
  private netnsOf?: number;
  private ownTableName?: string;

  /**
   * `watchdog`: told of every lock the restore holds (the dump's it takes over, its own before it
   * takes it), so that none stays if stasis dies before lifting them.
   */
  constructor(private readonly dump: DumpLock, private readonly watchdog?: LockWatchdog & { done(): void }) {
    if (!watchdog || !dump.conns.length || !dump.hostNet) return;
    // The dump's lock in stasis's namespace, taken over now (a tree with a namespace of its own:
    // once that namespace is known, inNamespace).
    if (dump.method === 'iptables') for (const c of dump.conns) watchdog.locking(c);
    else if (this.dumpTable) watchdog.lockingTable(this.dumpTable);
  }

  /** The restore's own nftables table: named by a run id of its own, as a dump's is. */
  private get ownTable(): string {
    return this.ownTableName ??= lockTable(newRunId());
  }

  private get dumpTable(): string | undefined {
    return this.dump.method === 'nftables' && this.dump.runId ? lockTable(this.dump.runId) : undefined;
  }

  /** The tree lives in the network namespace of task `pid`, its own; `lock`: locked whole until released. */
  inNamespace(pid: number, lock: boolean): void {
    this.netnsOf = pid;
    const nft = this.dump.method === 'nftables';
    // A dump's lock left in this same namespace is lifted with the restore's.
    if (this.dump.conns.length && nft && this.dumpTable) this.watchdog?.lockingTable(this.dumpTable, pid);
    else if (this.dump.conns.length && this.dump.method === 'iptables') this.watchdog?.locking(undefined, pid);
    if (!lock) return;
    if (nft) this.watchdog?.lockingTable(this.ownTable, pid);
    this.own = NamespaceLock.lock(pid, nft ? { table: this.ownTable, comment: ownerComment() } : undefined);
  }

  /** The connections of a tree in stasis's namespace, locked until released (nftables). */
  lockConnections(): void {
    if (this.dump.method !== 'nftables' || !this.dump.hostNet || !this.dump.conns.length) return;
    this.watchdog?.lockingTable(this.ownTable);
    const lock = new ConnectionLock('nftables', undefined, undefined, this.ownTable, ownerComment());
    lock.addAll(this.dump.conns);
    this.own = lock;
  }

  /** Lift it all; never throws (`warn` hears of what could not be lifted). */
  release(warn?: (msg: string) => void): void {
    try {
      this.lift(warn);
    } finally {
      this.watchdog?.done();
    }
  }

  private lift(warn?: (msg: string) => void): void {
    const own = this.own;
    this.own = undefined;
    if (this.dump.method === 'nftables') {
      const tables = [...own ? [this.ownTable] : [], ...this.dumpTable ? [this.dumpTable] : []];
      if (tables.length) unlockTables(tables, this.netnsOf, warn, own !== undefined);
      return;
    }
    if (own) own.release(warn);
    else if (this.netnsOf !== undefined && this.dump.conns.length && this.dump.method === 'iptables') NamespaceLock.unlock(this.netnsOf, warn);
    if (this.dump.method === 'iptables' && this.dump.hostNet && this.dump.conns.length) {
      new ConnectionLock('iptables').adopt(this.dump.conns).release(warn);
    }
  }
}
