// criu's configuration files: one option a line, as on the command line but without the
// leading dashes — `tcp-established`, `log-file /var/log/x.log`, `manage-cgroups=full` — words
// separated by blanks, a word in double quotes kept whole (\" for a quote in it), and a word
// beginning with # ending the line. A file that cannot be read is no setting, as with criu.
//
// The command line reads them as criu does (cliConfigFiles): /etc/criu/default.conf, then
// $HOME/.criu/default.conf, then the file $CRIU_CONFIG_FILE names, then --config FILE, then the
// command line itself, a later setting overriding an earlier one. --no-default-config, and
// --config too, leave out the first two; $CRIU_CONFIG_FILE and --config are read all the same.
//
// The RPC's config_file (runc passes "/etc/criu/runc.conf") fills the request field of the same
// meaning, unless the request already has that field (the request's value wins, as with criu).
// An option stasis does not know there is an error naming it.

import fs from 'node:fs';
import path from 'node:path';
import type { Message } from '../images/wire.js';

/** Option → [RPC field, how its value is read]. */
const FIELDS: Record<string, [string, 'flag' | 'string' | 'number' | 'lock']> = {
  'tcp-established': ['tcp_established', 'flag'], 'tcp-close': ['tcp_close', 'flag'], 'skip-in-flight': ['tcp_skip_in_flight', 'flag'], 'ext-unix-sk': ['ext_unix_sk', 'flag'],
  'shell-job': ['shell_job', 'flag'], 'file-locks': ['file_locks', 'flag'], 'link-remap': ['link_remap', 'flag'],
  'leave-running': ['leave_running', 'flag'], 'evasive-devices': ['evasive_devices', 'flag'],
  'manage-cgroups': ['manage_cgroups', 'flag'], 'log-file': ['log_file', 'string'],
  'root': ['root', 'string'], 'freeze-cgroup': ['freeze_cgroup', 'string'],
  'log-level': ['log_level', 'number'], 'network-lock': ['network_lock', 'lock'],
};

/** `network-lock`'s values as the RPC's criu_network_lock_method. */
const LOCK_METHODS: Record<string, number> = { iptables: 1, nftables: 2, skip: 3 };

/**
 * The words of configuration file `file` as command-line arguments (each line's first word
 * given its `--`), or undefined when it cannot be read.
 */
export function configWords(file: string): string[] | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    let first = true;
    for (let i = 0; ;) {
      while (i < line.length && /\s/.test(line[i]!)) i++;
      if (i >= line.length || line[i] === '#') break;
      let word: string;
      const close = line[i] === '"' ? closingQuote(line, i + 1) : -1;
      if (close >= 0) {
        word = line.slice(i + 1, close).replace(/\\"/g, '"');
        i = close + 1;
      } else {
        const end = line.slice(i).search(/\s/);
        word = end < 0 ? line.slice(i) : line.slice(i, i + end);
        i += word.length;
      }
      out.push(first ? `--${word}` : word);
      first = false;
    }
  }
  return out;
}

/** Index of the double quote that closes a string starting at `from` (\" does not), or -1. */
function closingQuote(line: string, from: number): number {
  for (let i = from; i < line.length; i++) {
    if (line[i] === '"' && line[i - 1] !== '\\') return i;
  }
  return -1;
}

/**
 * The configuration files a command line `argv` reads, in criu's order (see the top of this
 * file). `--help` decides nothing here: help is answered before any file is read.
 */
export function cliConfigFiles(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  let noDefault = false;
  let given: string | undefined;
  argv.forEach((a, i) => {
    if (a === '--no-default-config') noDefault = true;
    else if (a === '--config' && i + 1 < argv.length) [given, noDefault] = [argv[i + 1]!, true];
    else if (a.startsWith('--config=')) [given, noDefault] = [a.slice('--config='.length), true];
  });
  const files: string[] = [];
  if (!noDefault) {
    files.push('/etc/criu/default.conf');
    if (env.HOME) files.push(path.join(env.HOME, '.criu/default.conf'));
  }
  if (env.CRIU_CONFIG_FILE) files.push(env.CRIU_CONFIG_FILE);
  if (given !== undefined) files.push(given);
  return files;
}

/** The settings of a configuration file as request fields; throws on an unknown option. */
export function readConfigFile(file: string): Message {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  const out: Message = {};
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const m = /^([A-Za-z0-9-]+)(?:\s*=\s*|\s+)?(.*)$/.exec(line)!;
    const [name, value] = [m[1]!, m[2]!.replace(/^"(.*)"$/, '$1')];
    const v = /^v([0-4])$/.exec(name);
    if (v) {
      out.log_level = Number(v[1]);
      continue;
    }
    const f = FIELDS[name];
    if (!f) throw new Error(`${file}:${i + 1}: option '${name}' is not supported by stasis`);
    const [field, kind] = f;
    if (kind === 'flag') out[field] = true;
    else if (!value) throw new Error(`${file}:${i + 1}: option '${name}' needs a value`);
    else if (kind === 'lock') {
      if (!Object.hasOwn(LOCK_METHODS, value)) throw new Error(`${file}:${i + 1}: network-lock '${value}' is not one of iptables, nftables, skip`);
      out[field] = LOCK_METHODS[value];
    } else out[field] = kind === 'number' ? Number(value) : value;
  }
  return out;
}

/** The request with the configuration file's settings filled in where it has none. */
export function withConfigFile(o: Message): Message {
  if (typeof o.config_file !== 'string' || !o.config_file) return o;
  const merged: Message = { ...readConfigFile(o.config_file) };
  for (const [k, val] of Object.entries(o)) if (val !== undefined) merged[k] = val;
  return merged;
}
