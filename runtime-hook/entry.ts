// What the one-file build of stasis exports (scripts/bundle.mjs makes dist/bundle/stasis.cjs
// from this module; bin/load.cjs loads it): the command line, and dump and restore for the
// benchmarks, which time them in a fresh process loaded the way the command line is.
export { main } from './cli.js';
export { dump } from '../task/dump.js';
export { restore } from '../task/restore.js';
