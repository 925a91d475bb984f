// `stasis container checkpoint|restore`: a container checkpointed into an archive and restored
// from one, through its runtime (oci-spec/container.ts does the work).

import { COMPRESSIONS, parseCompression } from '../oci-spec/compression.js';
import { UsageError } from './options.js';

interface Spec {
  /** Options taking a value. */
  values: string[];
  flags: string[];
}

const CHECKPOINT: Spec = { values: ['export', 'create-image', 'compress', 'runtime', 'runtime-root', 'rootfs-diff-from'], flags: ['leave-running'] };
const RESTORE: Spec = { values: ['import', 'name', 'bundle', 'rootfs', 'runtime', 'runtime-root'], flags: [] };

function parse(verb: string, args: string[], spec: Spec): { values: Map<string, string>; flags: Set<string>; positional: string[] } {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (spec.flags.includes(name)) {
      if (eq >= 0) throw new UsageError(`container ${verb}: --${name} takes no value`);
      flags.add(name);
    } else if (spec.values.includes(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined || v === '') throw new UsageError(`container ${verb}: --${name} needs a value`);
      if (values.has(name)) throw new UsageError(`container ${verb}: --${name} given twice`);
      values.set(name, v);
    } else {
      throw new UsageError(`container ${verb}: unknown option --${name} (stasis container --help)`);
    }
  }
  return { values, flags, positional };
}

export async function containerCommand(argv: string[]): Promise<number> {
  const [verb, ...args] = argv;
  if (verb === 'checkpoint') {
    const p = parse(verb, args, CHECKPOINT);
    if (p.positional.length !== 1) throw new UsageError('container checkpoint wants one container id');
    const out = p.values.get('export');
    const image = p.values.get('create-image');
    if (!out && !image) throw new UsageError('container checkpoint needs --export FILE or --create-image DIR');
    const compress = p.values.get('compress');
    let compression;
    try {
      compression = compress === undefined ? undefined : parseCompression(compress);
    } catch {
      throw new UsageError(`--compress: '${compress}' is not one of ${COMPRESSIONS.join(', ')}`);
    }
    const runtime = p.values.get('runtime');
    if (runtime !== undefined && runtime !== 'runc' && !runtime.endsWith('/runc')) throw new UsageError(`--runtime ${runtime}: only runc is supported`);
    const { checkpointContainer } = await import('../oci-spec/container.js');
    const r = await checkpointContainer({
      id: p.positional[0]!, export: out, createImage: image, compression, leaveRunning: p.flags.has('leave-running'), runtime,
      runtimeRoot: p.values.get('runtime-root'), rootfsDiffFrom: p.values.get('rootfs-diff-from'),
    });
    for (const s of r.skipped) process.stderr.write(`stasis: warning: /${s} was not carried (a device node, fifo or socket)\n`);
    return 0;
  }
  if (verb === 'restore') {
    const p = parse(verb, args, RESTORE);
    if (p.positional.length) throw new UsageError(`container restore: unexpected argument '${p.positional[0]}' (the archive goes with --import)`);
    const archive = p.values.get('import');
    if (!archive) throw new UsageError('container restore needs --import FILE');
    const { restoreContainer } = await import('../oci-spec/container.js');
    await restoreContainer({
      import: archive, name: p.values.get('name'), bundle: p.values.get('bundle'), rootfs: p.values.get('rootfs'),
      runtime: p.values.get('runtime'), runtimeRoot: p.values.get('runtime-root'), stdio: 'inherit',
    });
    return 0;
  }
  throw new UsageError(verb === undefined ? 'container wants checkpoint or restore' : `container: unknown command '${verb}' (checkpoint or restore)`);
}
