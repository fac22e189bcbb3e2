/**
 * Quitting a live view (`monitor`, `orders stats --watch`) with a key, as `top` does:
 * on a terminal, stdin goes to raw mode and `q`, `Q`, Ctrl-C or Ctrl-D calls `quit`
 * (in raw mode Ctrl-C arrives as a key, not as SIGINT).
 */
export function quitOnKey(quit: () => void, stdin: NodeJS.ReadStream = process.stdin): () => void {
  if (stdin.isTTY !== true) return () => {};
  const onKey = (data: Buffer) => {
    const key = data.toString('utf8');
    if (key === 'q' || key === 'Q' || key.includes('\x03') || key.includes('\x04')) quit();
  };
  stdin.setRawMode(true);
  stdin.resume();
  stdin.on('data', onKey);
  let restored = false;
  // Idempotent and synchronous: safe from an 'exit' handler.
  return () => {
    if (restored) return;
    restored = true;
    stdin.off('data', onKey);
    stdin.setRawMode(false);
    stdin.pause();
  };
}
