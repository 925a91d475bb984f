import test from 'ava';
import { selfCheckInContainer } from '../helpers/stasis.js';

// The self-checking workloads in the way a container runtime takes them: new pid, mount,
// network, IPC and UTS namespaces, restored under --root (runc drives stasis).
for (const workload of ['timers', 'threads', 'sysv', 'state', 'vma-flags', 'zombies', 'thread-timers', 'setuid']) {
  test.serial(`${workload}: checks itself after runc checkpoint and restore through stasis`, async (t) => {
    await selfCheckInContainer(t, workload);
  });
}
