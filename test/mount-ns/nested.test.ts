import test from 'ava';
import { selfCheckInContainer, selfCheckRoundTrip } from '../helpers/stasis.js';

// Mount namespaces nested inside the dumped tree (CRIU's zdtm mntns_open and inotify01, as
// workloads of ours): a child's own namespace comes back as it was — a copy of its parent's with
// the child's own mounts — and files and inotify watches on either namespace's mounts with it.
// As a plain tree (the root in the host's mount namespace) and as a runc container (the root in
// a new pid + mount namespace, restored under --root).
const workloads: [string, string][] = [
  ['mntns-open', 'one file open through the parent\'s mount and the child\'s copy of it'],
  ['inotify-nested', 'a file and inotify watches on a tmpfs only the child\'s namespace has'],
];
for (const [workload, what] of workloads) {
  test.serial(`${workload}: ${what}, restored as a process tree`, async (t) => {
    await selfCheckRoundTrip(t, workload);
  });
  test.serial(`${workload}: ${what}, restored in a container`, async (t) => {
    await selfCheckInContainer(t, workload);
  });
}
