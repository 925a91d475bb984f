// `stasis show`: crit's JSON for one image file, or a summary of a whole
// image directory.
import { critJsonText } from './crit-json.js';
import { decodeImage } from './image.js';
import { readImageFile } from './private-file.js';
import { printable } from './errors.js';
import { describeImageDir } from './summary.js';

/** What `crit decode --pretty -i FILE` prints for the image file at `path`. */
export async function showImageFile(path: string): Promise<string> {
  return critJsonText(decodeImage(await readImageFile(path), path));
}

export { describeImageDir };

const usage = 'usage: stasis show FILE | stasis show -D DIR';

interface Output {
  write(text: string): unknown;
}

/**
 * Runs `stasis show ARGS`; returns the exit code. Failures are one line on
 * `stderr` (an image error names the file and the byte offset).
 */
export async function showCommand(args: string[], stdout: Output = process.stdout, stderr: Output = process.stderr): Promise<number> {
  try {
    if (args.length === 2 && (args[0] === '-D' || args[0] === '--images-dir')) {
      stdout.write(await describeImageDir(args[1]));
    } else if (args.length === 1 && !args[0].startsWith('-')) {
      stdout.write(await showImageFile(args[0]));
    } else {
      stderr.write(`${usage}\n`);
      return 1;
    }
    return 0;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    stderr.write(`stasis show: ${printable(message.split('\n')[0]!)}\n`);
    return 1;
  }
}
