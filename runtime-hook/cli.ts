// The `stasis` command line: criu's grammar, dispatching to the subsystems.
export async function main(argv: string[]): Promise<void> {
  const [cmd] = argv;
  if (cmd === '--version' || cmd === '-V') {
    process.stdout.write('Version: 4.2\n');
    return;
  }
  process.stderr.write(`stasis: unknown command '${cmd ?? ''}'\n`);
  process.exitCode = 1;
}
