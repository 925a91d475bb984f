// pagemap-*.img and the pages-N.img it points at.
//
// A pagemap image is a pagemap_head (naming pages-<pages_id>.img) followed
// by pagemap_entry-s, each a run of whole pages at `vaddr` (an address for a
// process, an offset for a shmem object). Walking the entries in file order,
// each PE_PRESENT run owns the next nr_pages * PAGE_SIZE bytes of the pages
// file; runs that live in the parent dump or are served lazily take none.
import { imageFileName, imageTypeByName } from './magic.js';
import type { Image } from './image.js';
import type { Message } from './wire.js';

export const PAGE_SIZE = 4096;

/** pagemap_entry.flags bits (criu/include/pagemap.h). */
export const PE_PARENT = 1 << 0; // the pages are in the parent image chain
export const PE_LAZY = 1 << 1; // may be restored lazily (userfaultfd)
export const PE_PRESENT = 1 << 2; // the bytes are in pages-N.img

/** One run of pages, as a reader should understand it. */
export interface PageRun {
  vaddr: bigint;
  nrPages: number;
  flags: number;
  /** Byte offset of the run in pages-<pagesId>.img; only for PE_PRESENT runs. */
  offset?: number;
}

export interface Pagemap {
  pagesId: number;
  runs: PageRun[];
}

/** The page count of an entry: nr_pages (CRIU >= 4.2) if present, else compat_nr_pages. */
export function entryPageCount(entry: Message): number {
  return Number(Object.hasOwn(entry, 'nr_pages') ? entry.nr_pages : entry.compat_nr_pages);
}

/** The flags of an entry, with the old in_parent flag and the "no flags" default folded in. */
export function entryFlags(entry: Message): number {
  const has = Object.hasOwn(entry, 'flags');
  let flags = has ? Number(entry.flags) : 0;
  if (entry.in_parent) flags |= PE_PARENT;
  else if (!has) flags = PE_PRESENT;
  return flags;
}

/** The runs of a decoded pagemap image, with their offsets in the pages file. */
export function readPagemap(image: Image): Pagemap {
  if (image.type.name !== 'PAGEMAP') throw new Error(`not a pagemap image: ${image.type.name}`);
  const [head, ...entries] = image.entries;
  if (!head) throw new Error('pagemap image without its pagemap_head');
  let offset = 0;
  const runs = entries.map(({ message }): PageRun => {
    const run: PageRun = { vaddr: BigInt(message.vaddr), nrPages: entryPageCount(message), flags: entryFlags(message) };
    if (run.flags & PE_PRESENT) {
      run.offset = offset;
      offset += run.nrPages * PAGE_SIZE;
    }
    return run;
  });
  return { pagesId: Number(head.message.pages_id), runs };
}

/**
 * A pagemap_entry for a run. Both page counts are set: nr_pages for CRIU
 * 4.2 and the required compat_nr_pages (when it fits) so CRIU 4.1 and older
 * can read the image too.
 */
export function pagemapEntry(vaddr: bigint, nrPages: number, flags: number): Message {
  return {
    vaddr,
    compat_nr_pages: nrPages <= 0xffffffff ? nrPages : 0,
    flags,
    nr_pages: BigInt(nrPages),
  };
}

/** A whole pagemap image for `runs` whose present pages go to pages-<pagesId>.img. */
export function pagemapImage(pagesId: number, runs: readonly Omit<PageRun, 'offset'>[]): Image {
  return {
    type: imageTypeByName('PAGEMAP'),
    entries: [
      { message: { pages_id: pagesId } },
      ...runs.map((r) => ({ message: pagemapEntry(r.vaddr, r.nrPages, r.flags) })),
    ],
  };
}

/** pages-<pagesId>.img */
export function pagesFileName(pagesId: number): string {
  return imageFileName('PAGES', pagesId);
}
