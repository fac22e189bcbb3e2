/** The CLI's printer: results to stdout, logs to stderr. The library never prints. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

const useColour = process.stderr.isTTY && !process.env.NO_COLOR;
const paint = (code: number, s: string) => (useColour ? `\x1b[${code}m${s}\x1b[0m` : s);

export function createLogger(quiet = false): Logger {
  const line = (level: string, message: string) => process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
  return {
    info: (m) => !quiet && line(paint(36, 'info '), m),
    warn: (m) => line(paint(33, 'warn '), m),
    error: (m) => line(paint(31, 'error'), m),
  };
}

export function print(text = ''): void {
  process.stdout.write(`${text}\n`);
}
