// The version stasis reports. runc and Podman compare criu's version against their minimums
// (runc wants ≥ 3.x for its features; Podman ≥ 3.11 for --print-stats), so stasis answers with
// the CRIU release whose image format and behaviour it follows.
export const VERSION = { major: 4, minor: 2, sublevel: 0 } as const;

/**
 * The whole conversation of `criu swrk` asked only its version, which runc and Podman start
 * once per command: the request record (criu_req{type: VERSION}) and stasis's answer
 * (criu_resp{type: VERSION, success, version{4, 2}}), so it can be served before the codec and
 * the native layer are even loaded: bin/swrk-version.cjs answers it with a copy of these, before
 * stasis is. A test checks the bytes against the codec and the copy.
 */
export const VERSION_REQUEST = Buffer.from('080a', 'hex');
export const VERSION_RESPONSE = Buffer.from('080a1001520408041002', 'hex');

export function versionText(): string {
  return `Version: ${VERSION.major}.${VERSION.minor}\n`;
}
