// Parsers for the /proc files the dumper reads while the tree is frozen. Each module handles one
// file kind; every reader throws ProcError naming the file (and the line, for bad content).
export { ProcError, type ProcPid, procPath, kernelDev, unescapeOctal } from './read.js';
export * from './maps.js';
export * from './vmflags.js';
export * from './status.js';
export * from './stat.js';
export * from './fdinfo.js';
export * from './mountinfo.js';
export * from './task.js';
export * from './ns.js';
export * from './auxv.js';
export * from './cgroup.js';
export * from './timers.js';
export * from './cmdline.js';
export * from './values.js';
