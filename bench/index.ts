// The list of benchmarks `npm run bench` knows.
import type { Benchmark } from './run.js';
import { injectionBench } from './inject.js';
import { memoryBench } from './memory.js';
import { threadsBench, treeBench } from './tree.js';
import { runcBench } from './runc.js';
import { tcpBench } from './tcp.js';
import { containerBench } from './container.js';

export const benchmarks: Benchmark[] = [injectionBench, memoryBench, treeBench, threadsBench, runcBench, containerBench, tcpBench];
