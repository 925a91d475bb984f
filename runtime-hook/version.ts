// The version stasis reports. runc and Podman compare criu's version against their minimums
// (runc wants ≥ 3.x for its features; Podman ≥ 3.11 for --print-stats), so stasis answers with
// the CRIU release whose image format and behaviour it follows.
export const VERSION = { major: 4, minor: 2, sublevel: 0 } as const;

export function versionText(): string {
  return `Version: ${VERSION.major}.${VERSION.minor}\n`;
}
