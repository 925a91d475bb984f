// runc bundles of containers with uid and gid mappings: the container's root is host uid and
// gid 100000 (65536 ids mapped), its other namespaces made in its user namespace by runc.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** runc's config for a container whose root is host uid/gid 100000 (its rootfs owned by it). */
export function mappedContainer(config: Record<string, any>): void {
  config.linux.namespaces = [...config.linux.namespaces.filter((n: { type: string }) => n.type !== 'user'), { type: 'user' }];
  config.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
  config.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
}

/** The rootfs owned by the container's root (host 100000), every directory above it searchable. */
export function mappedRootfs(rootfs: string): void {
  execFileSync('chown', ['-R', '100000:100000', rootfs]);
  for (let d = path.dirname(rootfs); d !== '/'; d = path.dirname(d)) fs.chmodSync(d, fs.statSync(d).mode | 0o011);
}
