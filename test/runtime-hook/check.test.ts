import test from 'ava';
import { stasis } from '../helpers/stasis.js';

test('stasis check tries each kernel feature stasis relies on and says each one', async (t) => {
  const r = await stasis(['check']);
  t.is(r.exitCode, 0, r.all);
  const lines = r.stdout.split('\n');
  for (const name of [
    'ptrace SEIZE + INTERRUPT', 'PTRACE_GETREGSET NT_X86_XSTATE', 'syscall injection through the vDSO', 'PAGEMAP_SCAN',
    'clone3 with set_tid', 'pidfd_open + pidfd_getfd', 'CPUID run in a task', 'PTRACE_O_SUSPEND_SECCOMP',
    'time namespaces', 'cgroup freezer',
  ]) {
    t.true(lines.some((l) => l.startsWith(`ok    ${name}`)), `"${name}" is said, and ok`);
  }
  t.deepEqual(lines.filter((l) => l.startsWith('FAIL')), []);
  t.regex(r.stdout, /Looks good\.$/);
});
