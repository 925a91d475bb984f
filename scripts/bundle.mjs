#!/usr/bin/env node
// Build step, after tsc: stasis as one CommonJS file, dist/bundle/stasis.cjs, with V8's code
// cache for all of it next to it (stasis.cjs.cache). bin/load.cjs loads the two.
//
// Why: a command starts a fresh node, and loading stasis as ~100 ES modules cost 80-120 ms here
// (resolving, reading and compiling each), and its functions then ran cold, each compiled when
// first called — in the middle of a dump, with the tasks frozen. One file resolves once; the
// cache, made with every function compiled (not just the top level, which is all V8 compiles up
// front), spares compiling any of them. V8 checks the cache against the source, its own version
// and its flags, and ignores one that does not match (a node other than the one that built it):
// stasis then compiles as it goes, as before, only slower.
import fs from 'node:fs';
import path from 'node:path';
import { Module, createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, 'dist', 'bundle');
const out = path.join(outDir, 'stasis.cjs');

// Node's built-in modules go through one shim each, an ES module that requires the built-in
// once: without it, every module of ours that does `import fs from 'node:fs'` gets its own copy
// of all of fs's properties when first loaded (esbuild's __toESM), 35 copies of fs among others,
// some 7 ms of every command's start.
const builtins = {
  name: 'builtins',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (a) => (a.kind === 'require-call' || a.namespace === 'builtin'
      ? { path: a.path, external: true }
      : { path: a.path, namespace: 'builtin' }));
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, async (a) => {
      // Plain properties only: a getter (fs.ReadStream, crypto.webcrypto...) loads more of Node.
      const mod = createRequire(import.meta.url)(a.path);
      const names = Object.keys(mod).filter((k) => /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default'
        && 'value' in Object.getOwnPropertyDescriptor(mod, k));
      const contents = `const m = require(${JSON.stringify(a.path)});\nexport default m;\nexport const { ${names.join(', ')} } = m;\n`;
      return { contents, loader: 'js' };
    });
  },
};

await build({
  plugins: [builtins],
  entryPoints: [path.join(root, 'dist', 'runtime-hook', 'entry.js')],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
  // koffi loads its native module from its own package; protobufjs only parses the .proto
  // files when the schema's JSON (below) is missing.
  external: ['koffi', 'protobufjs'],
  // images/schema.js finds the proto/ directory and its JSON relative to its own URL. The
  // bundle sits as deep under the package as that module (dist/bundle/, dist/images/), so its
  // own URL leads to the same proto/, and the JSON is copied beside it.
  banner: { js: "const __stasisUrl = require('node:url').pathToFileURL(__filename).href;" },
  define: { 'import.meta.url': '__stasisUrl' },
});
fs.copyFileSync(path.join(root, 'dist', 'images', 'proto-bundle.json'), path.join(outDir, 'proto-bundle.json'));

// The cache, compiled the way bin/load.cjs compiles the file (wrapped as a CommonJS module),
// every function eagerly; the flag is put back before the cache is taken, so the cache carries
// the flags a plain `node` runs with.
const source = Module.wrap(fs.readFileSync(out, 'utf8'));
v8.setFlagsFromString('--no-lazy');
const script = new vm.Script(source, { filename: out });
v8.setFlagsFromString('--lazy');
fs.writeFileSync(`${out}.cache`, script.createCachedData());
