// Each process's address space: its VMAs mapped as the image has them, their pages filled,
// protections tightened, and the mm fields (brk, arg and env areas, auxv, exe file). Shared
// memory (memfd) is made once for the tree, by the first task that maps or opens it.
// A process cloned from its restored parent keeps what it shares with the parent.

import { PE_PRESENT, imageFileName, pagesFileName } from '../../images/index.js';
import { applying } from '../errors.js';
import { memfdDescription } from '../../files/memfd.js';
import { PAGE_SIZE } from '../../sys/arch.js';
import type { Injector } from '../../sys/inject.js';
import { O_RDWR } from '../../sys/fcntl.js';
import {
  VMA, hasDumpablePages, restoreMmFields, restoreVmas, tightenProtections, type MmEntry, type VmaEntry,
} from '../mm.js';
import { DIRECT_FILL_LIMIT, fillBytes, fillPages, fillPagesDirect, splitRuns } from '../pages.js';
import { shmPageSize, type SysvImages } from '../sysv-ipc.js';
import type { ProcessImages } from './images.js';
import type { RestoreRun, Restoring } from './state.js';

/** Where a restored process's vDSO is: where its image had it. */
export function vdsoOf(p: ProcessImages): bigint | undefined {
  return p.mm?.vmas.find((v) => v.status & VMA.VDSO)?.start;
}

/** Whether an address is in the vDSO or vvar of an image (pages other dumpers save there are not filled). */
function kernelAreaOf(p: ProcessImages): (a: bigint) => boolean {
  const kernelArea = p.mm!.vmas.filter((v) => v.status & (VMA.VDSO | VMA.VVAR));
  return (a: bigint) => kernelArea.some((v) => a >= v.start && a < v.end);
}

/** The pages an image fills (present runs outside the kernel's areas). */
function filledRuns(p: ProcessImages): { vaddr: bigint; len: number }[] {
  const skip = kernelAreaOf(p);
  return p.pagemap!.runs.filter((r) => r.flags & PE_PRESENT && !skip(r.vaddr))
    .map((r) => ({ vaddr: r.vaddr, len: r.nrPages * PAGE_SIZE }));
}


export class TreeMemory {
  constructor(private readonly run: RestoreRun) {}

  /**
   * Address space and its contents, and the mm fields. A task cloned from its restored parent
   * (`from`) keeps what it shares with it. The pages filled are counted in RestoreRun.pages.
   */
  restore(t: Restoring, from?: Restoring): void {
    const { img, opts } = this.run;
    const parent = from?.p;
    const { inj, p } = t;
    const regFile = (id: number) => this.run.regFile(id);
    // Shared memory is a memfd inode of the tree's (MemfdInodes), mapped through a descriptor of its own.
    const memfdFd = (tinj: Injector, id: number): number => {
      const inodeId = Number((img.files.get(id)!.memfd as Record<string, unknown>).inode_id);
      const files = { pid: t.hpid, inj: tinj, imageEntries: (n: string) => img.extraImage(n), imagePath: (n: string) => img.file(n) };
      return memfdDescription(this.run.memfds, files, inodeId, O_RDWR, (own) => this.run.giveFd(tinj, own));
    };
    const skip = kernelAreaOf(p);
    const direct = fillBytes(p.pagemap!.runs, skip) <= DIRECT_FILL_LIMIT;
    const inherited = parent?.mm ? {
      vmas: parent.mm.vmas, filled: filledRuns(parent), ownFilled: filledRuns(p),
      scratch: from!.inj.ownScratch, trampoline: from!.inj.trampolineAddress, sequenceArea: from!.inj.sequenceAreaAddress,
      layout: from!.layout,
    } : undefined;
    const mmFile = imageFileName('MM', p.pid);
    const task = `task ${p.pid}`;
    const space = applying(mmFile, task,
      // Mappings of removed files are reopened through their remaps (files/reg.ts): the images,
      // and the PID the tasks' /proc gives this one (where a later opener reaches such a file).
      () => restoreVmas(inj, p.mm!.vmas, {
        regFile, memfdFd, imageEntries: (n) => img.extraImage(n), vpid: p.pid, sysvSegment: (id) => sysvSegment(img.sysv, id),
      }, direct ? () => false : hasDumpablePages, inherited));
    t.layout = space.layout;
    const progress = opts.progress;
    // In what it kept of its parent, a page equal to the parent's is left shared with it.
    const shared = inherited && space.kept.length
      ? { ranges: sharedRanges(space.kept, inherited.filled), counts: this.run.cow } : undefined;
    // Kept VMAs keep their final protections: only stasis's own writes can fill them. The task
    // copies the rest of a large image itself.
    const { inside, outside } = direct ? { inside: p.pagemap!.runs, outside: [] }
      : splitRuns(p.pagemap!.runs, space.kept.map((v) => ({ vaddr: v.start, len: Number(v.end - v.start) })));
    const n = applying(pagesFileName(p.pagemap!.pagesId), task, () => fillPagesDirect(t.hpid, inside, p.pagesFile!, skip, p.pagesBytes, shared)
      + (outside.length ? fillPages(inj, outside, p.pagesFile!, skip,
        progress && ((done, total) => progress(`memory of ${p.pid}`, done, total)), (i, file) => this.run.openImage(i, file)) : 0));
    applying(mmFile, `${task}: protections`, () => tightenProtections(inj, space));
    // A child cloned from its restored parent has the parent's mm fields already (fork copies
    // them): set again only where the images differ.
    if (!parent?.mm || !sameMmFields(parent.mm, p.mm!)) applying(mmFile, `${task}: mm fields`, () => restoreMmFields(inj, p.mm!, { regFile }));
    this.run.pages += n;
  }
}

/** A SysV segment of the dump's ipc namespace: its size and the size of its pages. */
function sysvSegment(sysv: SysvImages | undefined, shmid: number): { size: bigint; pageSize: bigint } | undefined {
  const e = sysv?.shm.find((x) => Number((x.message.desc as Record<string, unknown>).id) === shmid);
  return e && { size: BigInt(e.message.size as bigint), pageSize: shmPageSize(e.message) };
}

/** Where kept VMAs hold pages the parent's image filled (both lists in address order). */
function sharedRanges(kept: readonly VmaEntry[], filled: readonly { vaddr: bigint; len: number }[]): { vaddr: bigint; len: number }[] {
  const out: { vaddr: bigint; len: number }[] = [];
  let i = 0;
  for (const v of kept) {
    while (i < filled.length && filled[i]!.vaddr + BigInt(filled[i]!.len) <= v.start) i++;
    for (let j = i; j < filled.length && filled[j]!.vaddr < v.end; j++) {
      const r = filled[j]!;
      const lo = r.vaddr > v.start ? r.vaddr : v.start;
      const rEnd = r.vaddr + BigInt(r.len);
      const hi = rEnd < v.end ? rEnd : v.end;
      if (lo < hi) out.push({ vaddr: lo, len: Number(hi - lo) });
    }
  }
  return out;
}

function sameMmFields(a: MmEntry, b: MmEntry): boolean {
  const same = (x: unknown, y: unknown): boolean => (Array.isArray(x) && Array.isArray(y)
    ? x.length === y.length && x.every((v, i) => v === y[i]) : x === y);
  const fields = (m: MmEntry) => Object.keys(m).filter((k) => k !== 'vmas');
  const mine = fields(a);
  return mine.length === fields(b).length
    && mine.every((k) => same((a as unknown as Record<string, unknown>)[k], (b as unknown as Record<string, unknown>)[k]));
}

