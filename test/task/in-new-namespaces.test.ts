import test from 'ava';
import { selfCheckInContainer, selfCheckRoundTrip } from '../helpers/stasis.js';

// Kernel objects whose restore depends on the namespaces a tree lives in (CRIU's `ns` flavour):
// each workload checks itself as a plain process tree and as a runc container's (new pid, mount,
// network, IPC and UTS namespaces, restored under --root).
const workloads: { name: string; what: string; dumpArgs?: string[] }[] = [
  { name: 'locks', what: 'POSIX, flock and OFD locks, of the root and of children, come back held by their owners', dumpArgs: ['--file-locks'] },
  { name: 'sessions', what: 'sessions left behind by a parent that started its own, and a session led by a zombie, come back', },
];

for (const w of workloads) {
  test.serial(`${w.name}: ${w.what} (plain tree)`, async (t) => {
    await selfCheckRoundTrip(t, w.name, { dumpArgs: w.dumpArgs });
  });
  test.serial(`${w.name}: ${w.what} (runc container)`, async (t) => {
    await selfCheckInContainer(t, w.name, { runcArgs: w.dumpArgs });
  });
}
