// CRIU 4.2 and stasis on trees in the shape of CRIU's own test suite's user-namespace flavour
// ("uns"; test/helpers/uns-flavour.ts: the init of new user, pid, mount, net, ipc and uts
// namespaces with maps of two extents each, its own root and time namespace, the workload its
// child), both ways, dumped with `dump -t INIT --root ROOT` and restored with `restore
// --restore-detached --root ROOT` as zdtm drives criu. Where CRIU 4.2 gets an item wrong on its
// own dump too, that item (and only it) fails after its restore of stasis's.
import test from 'ava';
import { unsRoundTrip } from '../helpers/uns-flavour.js';

/** zdtm's unprivileged tests run as uid 18943 inside (dropIds); the others as root inside. */
const TO_CRIU: [string, string[], boolean, string[]][] = [
  ['timers', [], true, []],
  ['unix-sockets', [], true, []],
  ['fdstate', ['pipe-flags'], true, []],
  // CRIU 4.2 makes the set as root (its creator) and leaves the queue empty, on its own dump too.
  ['sysv', [], false, ['sem-creator', 'msg-stat']],
];
for (const [name, args, dropIds, criuFails] of TO_CRIU) {
  test.serial(`CRIU 4.2 restores stasis's dump of ${[name, ...args].join(' ')} in zdtm's user-namespace flavour, and it checks itself`, async (t) => {
    await unsRoundTrip(t, name, { args, dropIds, restorer: 'criu', criuFails });
  });
}

test.serial('CRIU 4.2 gets the same sysv items wrong restoring its own dump in zdtm\'s user-namespace flavour', async (t) => {
  await unsRoundTrip(t, 'sysv', { dumper: 'criu', restorer: 'criu', criuFails: ['sem-creator', 'msg-stat'] });
});

// (CRIU 4.2 dumps no unix socket with control messages queued: not unix-sockets)
const FROM_CRIU: [string, string[], boolean][] = [
  ['timers', [], true],
  ['fdstate', ['pipe-flags'], true],
  ['pending', [], true],
  ['sysv', [], false],
  ['userns-ct', [], false],
];
for (const [name, args, dropIds] of FROM_CRIU) {
  test.serial(`stasis restores CRIU 4.2's dump of ${[name, ...args].join(' ')} in zdtm's user-namespace flavour, and it checks itself`, async (t) => {
    await unsRoundTrip(t, name, { args, dropIds, dumper: 'criu' });
  });
}
