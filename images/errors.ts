// Errors of the image layer. Every message names the file and the byte
// offset, so a user can look at the spot with a hex viewer.

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
    super(`${file}: ${reason} at offset ${offset}${detail ? `: ${detail}` : ''}`);
    this.name = 'ImageError';
  }
}
