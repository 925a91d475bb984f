export async function demo(out: NodeJS.WritableStream): Promise<number> {
  out.write('demo: not yet\n');
  return 1;
}
