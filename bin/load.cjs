// Loads stasis for bin/stasis and for the benchmarks: the one-file build (dist/bundle/stasis.cjs,
// see scripts/bundle.mjs) compiled from its code cache, or, when there is no such build (tsc
// alone was run), the ES modules under dist/. Resolves to the exports of runtime-hook/entry.ts.
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

/** How stasis was loaded (for tests): the file run, and whether V8 took the code cache. */
exports.loaded = { file: '', cache: 'none' };

function loadBundle(file) {
  let cachedData;
  try {
    cachedData = fs.readFileSync(`${file}.cache`);
  } catch {
    // no cache: compiled as it runs
  }
  const script = new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8')), { filename: file, cachedData });
  exports.loaded = { file, cache: !cachedData ? 'none' : script.cachedDataRejected ? 'rejected' : 'used' };
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  const req = (id) => mod.require(id);
  req.resolve = (id) => Module._resolveFilename(id, mod);
  script.runInThisContext().call(mod.exports, mod.exports, req, mod, file, path.dirname(file));
  mod.loaded = true;
  return mod.exports;
}

/** The bundle, unless tsc has compiled the modules since it was made (it would be stale). */
function bundleFile(dist) {
  const file = path.join(dist, 'bundle', 'stasis.cjs');
  const mtime = (f) => {
    try {
      return fs.statSync(f).mtimeMs;
    } catch {
      return undefined;
    }
  };
  const bundled = mtime(file);
  const compiled = mtime(path.join(dist, 'runtime-hook', 'entry.js'));
  return bundled !== undefined && (compiled === undefined || bundled >= compiled) ? file : undefined;
}

exports.loadStasis = async function loadStasis() {
  const file = bundleFile(path.join(__dirname, '..', 'dist'));
  if (file) return loadBundle(file);
  exports.loaded = { file: path.join(__dirname, '..', 'dist', 'runtime-hook', 'entry.js'), cache: 'none' };
  return import('../dist/runtime-hook/entry.js');
};
