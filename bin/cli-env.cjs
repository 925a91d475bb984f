// What bin/stasis puts in its environment before anything else runs, unless the caller set it
// (the benchmarks give the fresh stasis processes they time the same).
//
// UV_THREADPOOL_SIZE=1: while stasis works, every traced task is pinned to its CPU and its
// other threads are kept off it. Four pool threads then crowd the CPUs left to them, and one
// preempted while it holds the pool's queue lock stalls stasis for milliseconds at a time
// whenever it hands the pool a file operation (measured on a 2-CPU machine when dumps wrote
// their images through the pool: a dozen stalls of 1-12 ms in a 50-process dump, none with one
// thread; a dump now writes its images in place unless the filesystem is slow). libuv reads it when
// the pool starts, before the first asynchronous file operation: why bin/stasis is CommonJS
// (bin/package.json), not an ES module, whose loading already uses the pool.
module.exports = { UV_THREADPOOL_SIZE: '1' };
