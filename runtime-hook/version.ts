// The version stasis reports. runc and Podman compare criu's version against their minimums
// (runc wants ≥ 3.x for its features; Podman ≥ 3.11 for --print-stats), so stasis answers with
// the CRIU release whose image format and behaviour it follows.
import fs from 'node:fs';

export const VERSION = { major: 4, minor: 2, sublevel: 0 } as const;

/** stasis's own version, package.json's (two levels up from dist/runtime-hook/ and dist/bundle/ alike). */
function ownVersion(): string {
  try {
    return String(JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
  } catch {
    return 'unknown';
  }
}

/** `--version`: criu's line first, as runtimes parse it (`Version: 4.2`), then stasis's own. */
export function versionText(): string {
  return `Version: ${VERSION.major}.${VERSION.minor}\nstasis: ${ownVersion()}\n`;
}
