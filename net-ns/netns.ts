// A network namespace with its contents (criu's default when the namespace is not external or
// empty): netns-N.img, its links in netdev-N.img, and — as criu keeps them — the raw outputs
// of iproute2 and iptables: ifaddr-N.img (`ip addr save`), route-N.img / route6-N.img
// (`ip -4|-6 route save table all`), iptables-N.img / ip6tables-N.img (`iptables-save`).
// Dump and restore side by side.
//
// Links: the loopback, and veth pairs with both ends inside the namespace, come back with
// their names, indexes (saved routes name links by index), MAC addresses, MTUs and up/down
// state. Anything else (a veth whose peer is outside, bridges, tunnels, ...) fails the dump,
// naming it. The namespace's and devices' sysctls are not saved (conf4/conf6 stay empty).
// The tools run inside the namespace through nsenter; a restore replays the saved messages,
// where "already exists" (the addresses and routes a link gets by itself) is no error.

import fs from 'node:fs';
import { listLinks, type LinkInfo } from '../sys/netlink.js';
import type { Message } from '../images/index.js';

/** node:child_process, loaded when first needed: most commands never start a program. */
const childProcess = () => process.getBuiltinModule('node:child_process');

const ND_TYPE = { LOOPBACK: 1, VETH: 2 } as const;
const ND_NAME: Record<number, string> = { 1: 'LOOPBACK', 2: 'VETH' };
const IFF_UP = 0x1;
const ARPHRD_LOOPBACK = 772;

/** The raw images: name prefix and the command that writes (and reads back) each. */
const RAW: { prefix: string; save: string[]; restore: string[]; optional?: boolean }[] = [
  { prefix: 'ifaddr', save: ['ip', 'addr', 'save'], restore: ['ip', 'addr', 'restore'] },
  { prefix: 'route', save: ['ip', '-4', 'route', 'save', 'table', 'all'], restore: ['ip', 'route', 'restore'] },
  { prefix: 'route6', save: ['ip', '-6', 'route', 'save', 'table', 'all'], restore: ['ip', 'route', 'restore'] },
  { prefix: 'iptables', save: ['iptables-save'], restore: ['iptables-restore'], optional: true },
  { prefix: 'ip6tables', save: ['ip6tables-save'], restore: ['ip6tables-restore'], optional: true },
];

export interface NetnsDump {
  netns: Message;
  devices: Message[];
  /** Raw image name → contents. */
  raw: Map<string, Buffer>;
}

export function netnsImageName(nsId: number): string {
  return `netns-${nsId}.img`;
}
export function netdevImageName(nsId: number): string {
  return `netdev-${nsId}.img`;
}

function hasTool(name: string): boolean {
  return ['/usr/sbin', '/sbin', '/usr/bin', '/bin'].some((d) => fs.existsSync(`${d}/${name}`));
}

/**
 * Run a tool inside the network namespace of `pid`; its stdout. `inputFile` becomes its stdin
 * (a file, not a pipe: `ip route restore` seeks in it).
 */
function inNetns(pid: number, argv: string[], inputFile?: string): Buffer {
  const stdin = inputFile === undefined ? 'ignore' : fs.openSync(inputFile, 'r');
  try {
    return childProcess().execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, '--', ...argv],
      { stdio: [stdin, 'pipe', 'pipe'], maxBuffer: 256 << 20 });
  } catch (e) {
    const err = e as { status?: number; stderr?: Buffer; message: string };
    const why = err.stderr?.toString().trim().split('\n').pop() || err.message;
    throw new Error(`${argv.join(' ')} in the network namespace of ${pid} failed: ${why}`);
  } finally {
    if (typeof stdin === 'number') fs.closeSync(stdin);
  }
}

function deviceOf(pid: number, l: LinkInfo, all: readonly LinkInfo[]): Message {
  const base = { ifindex: l.ifindex, mtu: l.mtu, flags: l.flags, name: l.name, ...(l.address ? { address: l.address } : {}) };
  const what = `network device ${l.name} in the network namespace of process ${pid}`;
  if (l.master !== undefined) throw new Error(`${what} is enslaved to another device, which stasis cannot dump yet`);
  if (l.arpType === ARPHRD_LOOPBACK && !l.kind) return { type: ND_TYPE.LOOPBACK, ...base };
  if (l.kind === 'veth') {
    if (l.linkNetnsid !== undefined || !all.some((p) => p.ifindex === l.link)) {
      throw new Error(`${what} is a veth whose peer is in another namespace, which stasis cannot dump yet`);
    }
    return { type: ND_TYPE.VETH, ...base, peer_ifindex: l.link };
  }
  throw new Error(`${what} is of kind ${l.kind ?? `ARPHRD ${l.arpType}`}, which stasis cannot dump yet`);
}

/** The network namespace of process `pid` (frozen), with its contents. */
export function dumpNetns(pid: number, nsId: number): NetnsDump {
  const links = listLinks(pid);
  const devices = links.map((l) => deviceOf(pid, l, links));
  const raw = new Map<string, Buffer>();
  for (const r of RAW) {
    if (r.optional && !hasTool(r.save[0]!)) continue;
    raw.set(`${r.prefix}-${nsId}.img`, inNetns(pid, r.save));
  }
  return { netns: {}, devices, raw };
}

/**
 * Fill the new network namespace of process `pid` (just cloned with CLONE_NEWNET): links first,
 * with their old indexes, then addresses, routes and firewall rules.
 */
export function restoreNetns(pid: number, devices: readonly Message[], imageFile: (name: string) => string,
  nsId: number): void {
  const mac = (d: Message) => (d.address ? ['address', Buffer.from(d.address as Uint8Array).toString('hex').replace(/(..)(?!$)/g, '$1:')] : []);
  const byIndex = new Map(devices.map((d) => [Number(d.ifindex), d]));
  for (const d of devices) {
    const name = String(d.name);
    const type = Number(d.type);
    if (type === ND_TYPE.LOOPBACK) {
      inNetns(pid, ['ip', 'link', 'set', 'dev', name, 'mtu', String(d.mtu)]);
    } else if (type === ND_TYPE.VETH) {
      const peer = byIndex.get(Number(d.peer_ifindex));
      if (!peer) throw new Error(`veth ${name}: its peer (index ${d.peer_ifindex}) is not in the image`);
      if (Number(d.ifindex) > Number(peer.ifindex)) continue; // made with its peer
      inNetns(pid, ['ip', 'link', 'add', name, 'index', String(d.ifindex), ...mac(d), 'mtu', String(d.mtu), 'type', 'veth',
        'peer', 'name', String(peer.name), 'index', String(peer.ifindex), ...mac(peer), 'mtu', String(peer.mtu)]);
    } else {
      throw new Error(`network device ${name} is of type ${ND_NAME[type] ?? type}, which stasis cannot restore yet`);
    }
  }
  for (const d of devices) {
    if (Number(d.flags) & IFF_UP) inNetns(pid, ['ip', 'link', 'set', 'dev', String(d.name), 'up']);
  }
  for (const r of RAW) {
    const file = imageFile(`${r.prefix}-${nsId}.img`);
    if (!fs.existsSync(file) || fs.statSync(file).size === 0) continue;
    try {
      inNetns(pid, r.restore, file);
    } catch (e) {
      // iproute2 reports existing entries but carries on; only a real failure is fatal.
      if (!/exists|already assigned/i.test((e as Error).message)) throw e;
    }
  }
}
