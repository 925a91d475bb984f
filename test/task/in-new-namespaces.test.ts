import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import { selfCheckInContainer, selfCheckRoundTrip } from '../helpers/stasis.js';

// Kernel objects whose restore depends on the namespaces a tree lives in (CRIU's `ns` flavour):
// each workload checks itself as a plain process tree and as a runc container's (new pid, mount,
// network, IPC and UTS namespaces, restored under --root).
const workloads: { name: string; what: string; dumpArgs?: string[]; plainArgs?: string[] }[] = [
  { name: 'locks', what: 'POSIX, flock and OFD locks, of the root and of children, come back held by their owners', dumpArgs: ['--file-locks'] },
  { name: 'sessions', what: 'sessions left behind by a parent that started its own, and a session led by a zombie, come back' },
  { name: 'pending', what: 'signals queued to the process and to a thread come back with their siginfo' },
  {
    name: 'shmparts', what: 'SysV shared memory attached in parts (split by mprotect, cut by munmap) comes back in its parts, shared',
    plainArgs: ['unshare-ipc'],
  },
  {
    name: 'nested-ipc', what: 'ipc and uts namespaces a process of the tree unshared come back its own, shared with the child born in them, with their SysV objects (a segment attached) and host name',
  },
];

for (const w of workloads) {
  test.serial(`${w.name}: ${w.what} (plain tree)`, async (t) => {
    await selfCheckRoundTrip(t, w.name, { dumpArgs: w.dumpArgs, args: (work) => [work, ...(w.plainArgs ?? [])] });
  });
  test.serial(`${w.name}: ${w.what} (runc container)`, async (t) => {
    await selfCheckInContainer(t, w.name, { checkpointArgs: w.dumpArgs });
  });
}

const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages';

/** Huge pages for a test (4 more than the pool has: the workload's segment takes 2), given back at its end. */
function hugePages(t: ExecutionContext): void {
  const before = Number(fs.readFileSync(NR_HUGEPAGES, 'utf8'));
  fs.writeFileSync(NR_HUGEPAGES, String(before + 4));
  t.teardown(() => fs.writeFileSync(NR_HUGEPAGES, String(before)));
  const now = Number(fs.readFileSync(NR_HUGEPAGES, 'utf8'));
  if (now < before + 4) t.fail(`the kernel gave ${now - before} huge pages, not 4`);
}

test.serial('shmparts hugetlb: a SysV segment of huge pages comes back of huge pages, with its contents (plain tree)', async (t) => {
  hugePages(t);
  await selfCheckRoundTrip(t, 'shmparts', { args: (work) => [work, 'hugetlb', 'unshare-ipc'] });
});
test.serial('shmparts hugetlb: a SysV segment of huge pages comes back of huge pages, with its contents (runc container)', async (t) => {
  hugePages(t);
  await selfCheckInContainer(t, 'shmparts', { args: ['hugetlb'] });
});
