// Live migration of a container's connections: a runc container in a network namespace of its
// own, wired to the host by a veth pair, holds two established connections — one it made to a
// server on the host, one a host client made to a server it runs — with data queued both ways.
// runc checkpoints it through stasis with --tcp-established; the namespace and its veth are then
// deleted and made again with the same addresses (the other host of a migration), the bundle
// names the new namespace, and runc restores it there: both connections carry on, byte-exact,
// neither host end ever sees a reset.
//
// The host ends send little (PEER_BYTES, queued unread in the container): with nothing more to
// send they never probe a closed window, so nothing of theirs reaches the new namespace before
// the restore has locked it (a probe that did would meet no socket there and be answered with a
// reset, for stasis as for CRIU). The container's ends fill their send queues.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { selfCheckInContainer, tmpDir } from '../helpers/stasis.js';
import { mappedContainer, mappedRootfs } from '../helpers/userns-container.js';
import { PatternPeer, nftLockTables, nftMonitor, nftRuleset, patternServer, unwire, wire } from './tcp-peers.js';




const PEER_BYTES = 16 * 1024;

// The lock method reaches stasis as runc passes criu's options: through the configuration file
// the container's annotation org.criu.config names (`network-lock nftables`).
// The third: a container whose root is an unprivileged host uid (uid and gid mappings, its
// namespaces but the network one owned by its user namespace), as a pod with user namespaces.
const flavours: { lock: string; mapped?: boolean }[] = [{ lock: 'iptables' }, { lock: 'nftables' }, { lock: 'iptables', mapped: true }];
for (const [i, { lock, mapped }] of flavours.entries()) {
  test.serial(`a runc container's connections, both ways, carry on when it is restored into a new network namespace with the same addresses (--network-lock ${lock}${mapped ? ', uid and gid mappings' : ''})`, async (t) => {
    const x = 20 + (process.pid % 70) + 70 * i;
    const hostIf = `stv${process.pid % 100000}${i}`;
    const [nsA, nsB] = [`stasis-tcp-${process.pid}-${i}-a`, `stasis-tcp-${process.pid}-${i}-b`];
    t.teardown(() => { unwire(nsA, hostIf); unwire(nsB, hostIf); });
    wire(nsA, hostIf, `10.77.${x}`);
    const srv = await patternServer(`10.77.${x}.1`, PEER_BYTES);
    t.teardown(() => srv.close());
    // The host's client of the container's server: connects as soon as the container listens.
    let client: PatternPeer | undefined;
    let monitor: { stop(): Promise<string[]> } | undefined;
    let stop = false;
    t.teardown(() => { stop = true; client?.socket.destroy(); });
    const connecting = (async () => {
      while (!stop && !client) {
        const s = net.connect(7070, `10.77.${x}.2`);
        const ok = await new Promise<boolean>((r) => { s.once('connect', () => r(true)); s.once('error', () => r(false)); });
        if (ok) client = new PatternPeer(s, PEER_BYTES);
        else await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await selfCheckInContainer(t, 'tcp-client', {
      args: [`c,10.77.${x}.1,${srv.port},${PEER_BYTES}`, `l,7070,${PEER_BYTES}`],
      prepare: mapped ? mappedRootfs : undefined,
      configure: (config) => {
        if (mapped) {
          mappedContainer(config);
          // A sysfs is mounted only by the user namespace owning the network namespace (here the
          // host's), and a recursive bind of the host's /sys brings mounts stasis cannot make
          // again inside the container's user namespace: no /sys.
          config.mounts = config.mounts.filter((m: { destination: string }) => m.destination !== '/sys' && !m.destination.startsWith('/sys/'));
        }
        if (lock === 'nftables') {
          const conf = path.join(tmpDir(t, 'stasis-criu-conf-'), 'criu.conf');
          fs.writeFileSync(conf, 'network-lock nftables\n');
          config.annotations = { ...config.annotations, 'org.criu.config': conf };
        }
        config.linux.namespaces = config.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: `/var/run/netns/${nsA}` } : n));
      },
      checkpointArgs: ['--tcp-established'],
      restoreArgs: ['--tcp-established'],
      afterReady: async (line) => {
        await connecting;
        const [a, b] = line.split(' ').slice(1).map(Number);
        srv.expect(a!);
        client!.expect(b!);
      },
      beforeRestore: async (config) => {
        if (lock === 'nftables') {
          // The dump left the namespace locked whole by its table: nothing in or out but the repair mark.
          const tables = nftLockTables(nsA);
          t.is(tables.length, 1, `one lock table in the dumped namespace: ${tables.join(', ')}`);
          const chains = nftRuleset(nsA).filter((o) => o.chain?.table === tables[0]).map((o) => `${o.chain.name} ${o.chain.hook} ${o.chain.policy}`);
          t.deepEqual(chains.sort(), ['input input drop', 'output output drop']);
        }
        // Another host: the namespace and its link are gone, new ones with the same addresses.
        unwire(nsA, hostIf);
        wire(nsB, hostIf, `10.77.${x}`);
        if (lock === 'nftables') monitor = await nftMonitor(t, nsB);
        config.linux.namespaces = config.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: `/var/run/netns/${nsB}` } : n));
      },
      afterRestore: async () => {
        srv.resume();
        client!.socket.resume();
        if (!monitor) return;
        // The restore locked the new namespace whole with a table of its own, and lifted it.
        const lines = await monitor.stop();
        const own = lines.map((l) => /^add chain inet (CRIU-\S+) input \{ type filter hook input priority filter; policy drop; \}/.exec(l)?.[1]).find((x) => x);
        t.truthy(own, `the restore locked the new namespace: ${lines.join('\n')}`);
        t.true(lines.includes(`delete table inet ${own}`), 'and lifted the lock');
      },
    });
    t.is(srv.verdict, 'ok', 'the host\'s server got every byte of the container\'s connection once');
    t.is(client!.verdict, 'ok', 'the host\'s client got every byte of its connection to the container once');
    t.deepEqual([...srv.events, ...client!.events].filter((e) => e.startsWith('error')), [], 'no reset on either host end');
    for (const tool of ['iptables', 'ip6tables']) {
      t.notRegex(execFileSync('ip', ['netns', 'exec', nsB, tool, '-S'], { encoding: 'utf8' }), /STASIS/, `no lock left in the new namespace (${tool})`);
    }
    t.deepEqual(nftLockTables(nsB), [], 'no lock table left in the new namespace');
  });
}
