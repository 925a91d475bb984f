// criu's configuration files (runc passes config_file "/etc/criu/runc.conf"; a missing file
// is no setting): one option a line, as on the command line but without the dashes —
// `tcp-established`, `log-file /var/log/x.log`, `manage-cgroups=full` — and # comments.
// Each setting fills the RPC request field of the same meaning, unless the request already
// has that field (the request's value wins, as with criu). An option stasis does not know is
// an error naming it.

import fs from 'node:fs';
import type { Message } from '../images/wire.js';

/** Option → [RPC field, how its value is read]. */
const FIELDS: Record<string, [string, 'flag' | 'string' | 'number']> = {
  'tcp-established': ['tcp_established', 'flag'], 'ext-unix-sk': ['ext_unix_sk', 'flag'],
  'shell-job': ['shell_job', 'flag'], 'file-locks': ['file_locks', 'flag'], 'link-remap': ['link_remap', 'flag'],
  'leave-running': ['leave_running', 'flag'], 'evasive-devices': ['evasive_devices', 'flag'],
  'manage-cgroups': ['manage_cgroups', 'flag'], 'log-file': ['log_file', 'string'],
  'root': ['root', 'string'], 'freeze-cgroup': ['freeze_cgroup', 'string'],
  'log-level': ['log_level', 'number'],
};

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
    else out[field] = kind === 'number' ? Number(value) : value;
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
