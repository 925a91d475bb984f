// `stasis inspect ARCHIVE|DIR… [--format tree|json|yaml] [--ps-tree] [--ps-tree-cmd]
// [--ps-tree-env] [--files] [--sockets] [--mounts] [--stats] [--metadata] [--all] [--pid N]`
// and `stasis inspect --list [DIR…]`.

import YAML from 'yaml';
import {
  KUBELET_CHECKPOINTS, byteText, inspect, listCheckpoints, type CheckpointInfo, type InspectOptions, type ListedCheckpoint,
  type ProcessNode,
} from './inspect.js';
import { UsageError, branch, intOption, leaf, parseCommandArgs, renderTree, runCommand, type Output, type TreeNode } from './tree-view.js';

const usage = 'usage: stasis inspect ARCHIVE|DIR... [--format tree|json|yaml] [--ps-tree] [--ps-tree-cmd] [--ps-tree-env] ' +
  '[--files] [--sockets] [--mounts] [--stats] [--metadata] [--all] [--pid N] [--summary] | stasis inspect --list [DIR...]';

/** Microseconds as a Go duration prints them (checkpointctl's tree): 1.5ms, 210µs, 2.1s. */
function duration(us: number): string {
  if (us < 1000) return `${us}µs`;
  if (us < 1_000_000) return `${+(us / 1000).toFixed(3)}ms`;
  return `${+(us / 1_000_000).toFixed(6)}s`;
}

function processNode(p: ProcessNode): TreeNode {
  const details: (TreeNode | undefined)[] = [
    leaf('Command line', p.cmdline),
    p.environment_variables
      ? branch('Environment variables', Object.entries(p.environment_variables).map(([k, v]) => ({ text: `${k}=${v}` })))
      : undefined,
    p.threads.length > 1 ? leaf('Threads', p.threads.join(' ')) : undefined,
  ];
  const state = p.task_state && p.task_state !== 'Alive' ? ` (${p.task_state})` : '';
  return { text: `[${p.pid}]  ${p.command}${state}`, children: [...details, ...(p.children ?? []).map(processNode)].filter((n): n is TreeNode => !!n) };
}

/** One checkpoint as a tree, in checkpointctl's order. */
export function infoTree(info: CheckpointInfo): TreeNode {
  const s = info.checkpoint_size;
  const st = info.statistics;
  const md = info.metadata;
  const children: (TreeNode | undefined)[] = [
    leaf('Image', info.image),
    leaf('ID', info.id),
    leaf('Runtime', info.runtime),
    leaf('Created', info.created),
    leaf('Checkpointed', info.checkpointed),
    leaf('Engine', info.engine),
    leaf('IP', info.ip),
    leaf('MAC', info.mac),
    info.networks && info.networks.length > 1
      ? branch('Networks', info.networks.map((n) => branch(n.name, Object.entries(n.interfaces).map(([ifname, i]) =>
        branch(ifname, [leaf('IP', i.ip), leaf('MAC', i.mac), leaf('Gateway', i.gateway)])))))
      : undefined,
    {
      text: `Checkpoint size: ${byteText(s.total_size)}`,
      children: [
        leaf('Memory pages size', s.memory_pages_size === undefined ? undefined : byteText(s.memory_pages_size)),
        leaf('AMD GPU memory pages size', s.amd_gpu_memory_pages_size === undefined ? undefined : byteText(s.amd_gpu_memory_pages_size)),
      ].filter((n): n is TreeNode => !!n),
    },
    leaf('Root FS diff size', s.root_fs_diff_size === undefined ? undefined : byteText(s.root_fs_diff_size)),
    st
      ? branch('CRIU dump statistics', [
        leaf('Freezing time', duration(st.freezing_time)), leaf('Frozen time', duration(st.frozen_time)),
        leaf('Memory dump time', duration(st.memdump_time)), leaf('Memory write time', duration(st.memwrite_time)),
        leaf('Memory pages scanned', st.pages_scanned), leaf('Memory pages written', st.pages_written),
      ])
      : undefined,
    md
      ? branch('Metadata', [
        leaf('Pod name', md.pod_name), leaf('Kubernetes namespace', md.kubernetes_namespace),
        md.annotations ? branch('Annotations', Object.entries(md.annotations).map(([k, v]) => ({ text: `${k}: ${v}` }))) : undefined,
      ])
      : undefined,
    info.process_tree ? { text: 'Process tree', children: [processNode(info.process_tree)] } : undefined,
    info.file_descriptors
      ? { text: 'Open files', children: info.file_descriptors.map((f) => ({
        text: `[${f.pid}]`, children: (f.open_files ?? []).map((o) => ({ text: `[${o.type ? `${o.type} ` : ''}${o.fd}]  ${o.path}` })),
      })) }
      : undefined,
    info.sockets
      ? { text: 'Open sockets', children: info.sockets.map((sk) => ({
        text: `[${sk.pid}]`, children: (sk.open_sockets ?? []).map((o) => {
          const d = o.data;
          const where = o.protocol === 'UNIX'
            ? d.address || '(unnamed)'
            : d.src !== undefined ? `${d.src}:${d.src_port} -> ${d.dst}:${d.dst_port}` : '';
          const bufs = d.send_buf ? ` (↑ ${d.send_buf} ↓ ${d.recv_buf})` : '';
          return { text: `[${o.protocol}${d.state ? ` (${d.state})` : ''}] fd ${o.fd}  ${where}${bufs}` };
        }),
      })) }
      : undefined,
    info.mounts
      ? { text: 'Overview of mounts', children: info.mounts.map((m) => ({
        text: `Destination: ${m.destination}`, children: [{ text: `Type: ${m.type}` }, { text: `Source: ${m.source}` }],
      })) }
      : undefined,
  ];
  for (const c of children) if (c?.children && !c.children.length && c.text !== `Checkpoint size: ${byteText(s.total_size)}`) c.children.push({ text: '(none)' });
  return { text: info.container_name || '(no container: a bare images directory)', children: children.filter((n): n is TreeNode => !!n) };
}

function listText(list: ListedCheckpoint[]): string {
  const head = ['Namespace', 'Pod', 'Container', 'Engine', 'Time Checkpointed', 'Checkpoint Name'];
  const rows = list.map((c) => [c.namespace, c.pod, c.container, c.engine, c.checkpointed, c.checkpoint_name]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[line(head), ...rows.map(line)].join('\n')}\n`;
}

function formatOf(v: string | undefined): 'tree' | 'json' | 'yaml' {
  const f = v ?? 'tree';
  if (f !== 'tree' && f !== 'json' && f !== 'yaml') throw new UsageError(`--format wants tree, json or yaml, got '${f}'`);
  return f;
}

/** Runs `stasis inspect ARGS`; returns the exit code. */
export async function inspectCommand(args: string[], stdout: Output = process.stdout, stderr: Output = process.stderr): Promise<number> {
  return runCommand('inspect', usage, stderr, async () => {
    const { values: v, positionals } = parseCommandArgs(args, {
      format: { type: 'string' }, 'ps-tree': { type: 'boolean' }, 'ps-tree-cmd': { type: 'boolean' },
      'ps-tree-env': { type: 'boolean' }, files: { type: 'boolean' }, sockets: { type: 'boolean' }, mounts: { type: 'boolean' },
      stats: { type: 'boolean' }, metadata: { type: 'boolean' }, all: { type: 'boolean' }, pid: { type: 'string' },
      list: { type: 'boolean' }, summary: { type: 'boolean' },
    });
    const format = formatOf(v.format);
    if (v.list) {
      const list = await listCheckpoints(positionals.length ? positionals : [KUBELET_CHECKPOINTS]);
      if (format === 'json') stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      else if (format === 'yaml') stdout.write(YAML.stringify(list));
      else stdout.write(list.length ? listText(list) : 'no checkpoints found\n');
      return;
    }
    if (!positionals.length) throw new UsageError('no checkpoint given');
    const options: InspectOptions = {
      psTree: v['ps-tree'], psTreeCmd: v['ps-tree-cmd'], psTreeEnv: v['ps-tree-env'], files: v.files, sockets: v.sockets,
      mounts: v.mounts, stats: v.stats, metadata: v.metadata, all: v.all, pid: intOption('pid', v.pid, 1), summary: v.summary,
    };
    const infos = await inspect(positionals, options);
    if (format === 'json') stdout.write(`${JSON.stringify(infos, null, 2)}\n`);
    else if (format === 'yaml') stdout.write(YAML.stringify(infos));
    else {
      for (const info of infos) {
        stdout.write(`\nDisplaying container checkpoint tree view from ${info.checkpoint_path}\n\n`);
        stdout.write(renderTree(infoTree(info)));
        if (info.images_summary) stdout.write(`\n${info.images_summary}`);
      }
    }
  });
}
