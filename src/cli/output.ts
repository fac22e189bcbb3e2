import { createRequire } from 'node:module';
import { pino, type Logger as PinoLogger } from 'pino';
import type PinoPretty from 'pino-pretty';
import { redactSecrets } from '../config/index.js';

/**
 * The CLI's printer: results to stdout, logs to stderr with pino — JSON lines when
 * stderr is not a terminal (for log collectors), readable and coloured when it is.
 * LOG_LEVEL sets the level. The library never prints; only the CLI does.
 */
export type Logger = PinoLogger;

export function createLogger(level: string = process.env.LOG_LEVEL ?? 'info'): Logger {
  const options = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Every line logged, whatever it holds (an error's message or stack, a URL in a field),
    // with the secrets of its URLs and password= pairs masked.
    hooks: { streamWrite: redactSecrets },
  };
  if (process.stderr.isTTY) {
    // Loaded only for a terminal: every command starts faster without it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    // One line per event: every message already says what its fields hold, so the fields
    // are not printed again below it (pino-pretty's default, an indented object per line).
    // At debug and trace they are kept, on the same line.
    const detailed = level === 'debug' || level === 'trace';
    return pino(
      options,
      pretty({
        destination: 2,
        sync: true,
        colorize: !process.env.NO_COLOR,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
        ...(detailed ? { singleLine: true } : { hideObject: true }),
      }),
    );
  }
  return pino(options, pino.destination({ dest: 2, sync: true }));
}

export function print(text = ''): void {
  process.stdout.write(`${redactSecrets(text)}\n`);
}

/** "1 worker", "5 workers", "1,200 rows": a count with its noun, singular for exactly one. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}
