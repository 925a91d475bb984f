// Self-checking workloads in the shape of CRIU's test suite's user-namespace flavour ("uns"),
// dumped and restored by stasis as zdtm drives criu (test/helpers/uns-flavour.ts): each checks
// itself, and the maps, namespaces' owners and every task's ids are as before seen from outside.
import test from 'ava';
import { unsRoundTrip } from '../helpers/uns-flavour.js';
import { selfCheckInContainer } from '../helpers/stasis.js';
import { mappedContainer, mappedRootfs } from '../helpers/userns-container.js';

// zdtm's unprivileged tests: uid 18943, gid 58467, groups 27495 48244 inside, no capabilities.
const UNPRIVILEGED: [string, string[], string[]][] = [
  ['timers', [], []],
  ['fdstate', ['pipe-flags'], []],
  ['unix-sockets', [], []],
  ['pending', [], []],
  // (their uid, which a zombie's parent's waitid() reports, was root's inside before stasis kept it)
  ['zombies', ['other-uid'], ['exit-0-uid', 'exit-as-other-uid', 'sigkill-uid']],
  ['sessions', [], []],
  ['shm', [], []],
  ['family', [], []],
  ['orphans', [], []],
  ['inet-sockets', [], []],
  ['unix-scm', [], []],
  ['unix-pending', [], []],
  ['ghost-fifo', [], []],
  ['ghost-cwd', [], []],
  // (a removed file mapped in one task and opened in another: reached through the first's
  // map_files link, which only stasis may open, not a task in the namespace)
  ['ghost-mmap', [], []],
  // (sockets bound in a directory removed since: the directory is made again by the task, not
  // by the host's root, which the namespace's root may not write in)
  ['unix-gone', [], []],
  ['thread-timers', [], []],
  ['memfds', [], []],
  ['fdstate', ['fown'], []],
  ['fdstate', ['seccomp-strict'], []],
  ['fdstate', ['udp-shutdown'], []],
  ['dgram-peer', [], []],
];
// With a zdtm test's own options (its .desc opts), given to dump and restore alike.
for (const [name, crOpts, dropIds] of [
  ['locks', ['--file-locks'], true],
  ['leases', ['--file-locks'], false],
  ['link-remap', ['--link-remap'], true],
] as [string, string[], boolean][]) {
  test.serial(`${name} (${crOpts.join(' ')}), run ${dropIds ? 'as zdtm\'s unprivileged tests are' : 'as root'} in its user-namespace flavour, checks itself after stasis dump and restore --root`, async (t) => {
    await unsRoundTrip(t, name, { dropIds, crOpts });
  });
}

// fdkinds takes its mode first.
for (const mode of ['eventfd', 'signalfd', 'timerfd', 'epoll', 'inotify', 'fifo', 'ghost']) {
  test.serial(`fdkinds ${mode}, run as zdtm's unprivileged tests are in its user-namespace flavour, checks itself after stasis dump and restore --root`, async (t) => {
    await unsRoundTrip(t, 'fdkinds', { dropIds: true, argv: (work) => [mode, work] });
  });
}
for (const [name, args, items] of UNPRIVILEGED) {
  test.serial(`${[name, ...args].join(' ')}, run as zdtm's unprivileged tests are in its user-namespace flavour, checks itself after stasis dump and restore --root`, async (t) => {
    await unsRoundTrip(t, name, { dropIds: true, args, items });
  });
}

// Tests that are root inside (zdtm's suid ones): SysV objects of several owners and creators,
// threads of several gids, files of several owners, a tree that gives up root itself.
const ROOT_INSIDE: [string, string[], string[]][] = [
  ['sysv', [], []],
  ['threads', [], []],
  ['userns-ct', [], ['owner-mine', 'owner-theirs', 'owner-others', 'ids', 'uid_map', 'gid_map', 'setgroups', 'pid']],
  ['setuid', [], []],
  ['zombies', ['other-uid'], ['exit-as-other-uid']],
  // (a removed file of owner 1:2 inside: its ghost's owner written as the namespace sees it)
  ['fdstate', ['file-attr'], ['attr-owner', 'attr-mode']],
  ['state', [], []],
  ['unix-dgram', [], []],
  ['nested-ipc', [], []],
  ['shmparts', [], []],
  ['shared-pages', ['all'], []],
  ['vma-flags', [], []],
  ['fdstate', ['packet'], []],
];
for (const [name, args, items] of ROOT_INSIDE) {
  test.serial(`${[name, ...args].join(' ')}, run as root inside zdtm's user-namespace flavour, checks itself after stasis dump and restore --root`, async (t) => {
    await unsRoundTrip(t, name, { args, items });
  });
}

// The same owners in a runc container with uid and gid mappings (its root host uid 100000): a
// removed file of 1:2 inside, a zombie that exited as 4321 inside.
for (const [name, args, items] of [
  ['fdstate', ['file-attr'], ['attr-owner']],
  ['zombies', ['other-uid'], ['exit-as-other-uid']],
  ['ghost-mmap', [], []],
  ['unix-gone', [], []],
] as [string, string[], string[]][]) {
  test.serial(`${[name, ...args].join(' ')} in a runc container with uid and gid mappings checks itself after checkpoint and restore through stasis`, async (t) => {
    const { restored } = await selfCheckInContainer(t, name, { args, configure: mappedContainer, prepare: mappedRootfs });
    for (const item of items) t.true(restored.lines.includes(`ok ${item}`), item);
  });
}
