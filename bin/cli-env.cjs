// What bin/stasis puts in its environment before anything else runs, unless the caller set it
// (the benchmarks give the fresh stasis processes they time the same).
//
// UV_THREADPOOL_SIZE=1: a dump hands its image files to libuv's thread pool while it works on
// the next process, with every traced task pinned to stasis's CPU and stasis's other threads
// kept off it. Four pool threads then crowd the CPUs left to them, and one preempted while it
// holds the pool's queue lock stalls stasis for milliseconds at a time (measured on a 2-CPU
// machine: a dozen stalls of 1-12 ms in a 50-process dump, none with one thread; the files of
// one directory are created one after another by the filesystem anyway). libuv reads it when
// the pool starts, before the first asynchronous file operation: why bin/stasis is CommonJS
// (bin/package.json), not an ES module, whose loading already uses the pool.
module.exports = { UV_THREADPOOL_SIZE: '1' };
