// Latency of one injected syscall (the unit cost of every restore step).
import { SYS } from '../sys/arch.js';
import { Injector } from '../sys/inject.js';
import { detach, seizeAndStop } from '../sys/ptrace.js';
import { startWorkload } from '../test-containers/launch.js';
import type { Benchmark } from './run.js';

export const injectionBench: Benchmark = {
  name: 'injection',
  async run() {
    const w = await startWorkload('counter', ['nanosleep', '50']);
    try {
      await w.waitForLine(/^tick 1$/);
      seizeAndStop(w.pid);
      const t0 = performance.now();
      const inj = new Injector(w.pid);
      const setup = performance.now() - t0;
      const n = 2000;
      const t1 = performance.now();
      for (let i = 0; i < n; i++) inj.call(SYS.getpid);
      const perCall = ((performance.now() - t1) * 1000) / n;
      inj.finish();
      detach(w.pid);
      return [
        { name: 'injector setup (save, pin, find vDSO syscall)', value: setup * 1000, unit: 'µs' },
        { name: 'one injected syscall (getpid)', value: perCall, unit: 'µs' },
      ];
    } finally {
      await w.kill();
    }
  },
};
