// Text trees (├── └──) for inspect and diff, and the shared bits of their command lines.

import util, { type ParseArgsConfig } from 'node:util';
import { printable } from '../images/errors.js';

export interface TreeNode {
  text: string;
  children?: TreeNode[];
}

/** The tree as lines: the root's text, then its children drawn below it. */
export function renderTree(root: TreeNode): string {
  const lines = [root.text];
  const walk = (nodes: TreeNode[], prefix: string) => {
    nodes.forEach((n, i) => {
      const last = i === nodes.length - 1;
      lines.push(`${prefix}${last ? '└── ' : '├── '}${n.text}`);
      if (n.children?.length) walk(n.children, `${prefix}${last ? '    ' : '│   '}`);
    });
  };
  walk(root.children ?? [], '');
  return `${lines.join('\n')}\n`;
}

/** A node only when it has something under it. */
export function branch(text: string, children: (TreeNode | undefined)[]): TreeNode | undefined {
  const kept = children.filter((c): c is TreeNode => c !== undefined);
  return kept.length ? { text, children: kept } : undefined;
}

/** A "name: value" leaf, left out when the value is empty. */
export function leaf(name: string, value: string | number | undefined): TreeNode | undefined {
  return value === undefined || value === '' ? undefined : { text: `${name}: ${value}` };
}

export interface Output {
  write(text: string): unknown;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/** parseArgs, with its errors made one-line usage errors. */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T):
  ReturnType<typeof util.parseArgs<{ args: string[]; options: T; allowPositionals: true; strict: true }>> {
  try {
    // util.parseArgs, not a named import: the bundle's node:util shim leaves out Node's lazy getters.
    return util.parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!);
  }
}

/** Runs a command body, turning any failure into one line on stderr and exit code 1. */
export async function runCommand(name: string, usage: string, stderr: Output, body: () => Promise<void>): Promise<number> {
  try {
    await body();
    return 0;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    stderr.write(`stasis ${name}: ${printable(message.split('\n')[0]!)}\n`);
    if (e instanceof UsageError) stderr.write(`${usage}\n`);
    return 1;
  }
}

/** A --flag value that must be a whole number. */
export function intOption(name: string, v: string | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} wants a whole number${min ? ` of at least ${min}` : ''}, got '${v}'`);
  return n;
}
