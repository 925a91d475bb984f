// Errors of the image layer. Every message names the file and the byte
// offset, so a user can look at the spot with a hex viewer.

/**
 * A name or path from an image or a directory, safe to print on one line: control characters
 * (a newline in a file name would end the error line early, an escape sequence would drive the
 * terminal) are shown as C escapes.
 */
export function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\t': '\\t', '\r': '\\r' };
    return named[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

/** A malformed protobuf message; `offset` is relative to the decoded buffer. */
export class WireError extends Error {
  constructor(
    readonly reason: string,
    readonly offset: number,
  ) {
    super(`${reason} at offset ${offset}`);
    this.name = 'WireError';
  }
}

/** A corrupt, truncated or unexpected image file. */
export class ImageError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
    readonly detail?: string,
  ) {
    super(`${printable(file)}: ${reason} at offset ${offset}${detail ? `: ${detail}` : ''}`);
    this.name = 'ImageError';
  }
}

/** An image file the dump should have and does not (`code` as fs's, so ENOENT checks hold). */
export class MissingImageError extends Error {
  readonly code = 'ENOENT';
  constructor(readonly file: string) {
    super(`${printable(file)}: missing`);
    this.name = 'MissingImageError';
  }
}
