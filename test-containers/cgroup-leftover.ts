// A named cgroup v1 hierarchy mounted nowhere, as some tools leave one behind: it stays in every
// process's /proc/PID/cgroup (as "N:name=NAME:/") as long as it has a child cgroup. Made by
// mounting it on a directory of the test's, making the child, and unmounting; removed the same
// way backwards (once it has no child and no mount the kernel lets it go).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

export class LeftoverHierarchy {
  private readonly dir: string;

  private constructor(readonly name: string, readonly child: string) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stasis-cgleft-'));
  }

  /** Make `name=NAME` with one child cgroup, and unmount it. */
  static create(name: string, child = 'keep'): LeftoverHierarchy {
    const h = new LeftoverHierarchy(name, child);
    h.mount();
    try {
      fs.mkdirSync(path.join(h.dir, child));
    } finally {
      execFileSync('umount', [h.dir]);
    }
    if (!h.listed()) throw new Error(`name=${name} is not in /proc/self/cgroup once unmounted`);
    return h;
  }

  /** Whether this process's /proc/self/cgroup names the hierarchy. */
  listed(): boolean {
    return fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').some((l) => l.split(':')[1] === `name=${this.name}`);
  }

  private mount(): void {
    execFileSync('mount', ['-t', 'cgroup', '-o', `none,name=${this.name}`, 'cgroup', this.dir]);
  }

  /**
   * Remove it: mounted again, its child removed, unmounted. The kernel lets a hierarchy go when
   * it is unmounted with no child left, and a removed child takes a moment to be gone: so it
   * stays mounted a little after the rmdir, and all is done again until it is gone (at most
   * about 10 seconds; tasks in it, e.g. zombies not yet reaped, keep it).
   */
  async destroy(): Promise<void> {
    if (!fs.existsSync(this.dir)) return; // done already
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < 20 && this.listed(); i++) {
      this.mount();
      try {
        fs.rmdirSync(path.join(this.dir, this.child));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
      } finally {
        await sleep(250);
        execFileSync('umount', [this.dir]);
      }
      await sleep(250);
    }
    fs.rmdirSync(this.dir);
    if (this.listed()) throw new Error(`name=${this.name} is still there`);
  }
}
