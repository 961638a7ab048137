/**
 * Logging: pino, JSON lines by default. Pretty output only when stderr is a terminal (through pino-pretty,
 * as a pino transport in a worker thread). Nothing on the per-packet path logs at info level.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LoggerOptions {
  readonly level?: LevelWithSilent;
  /** 'auto' pretty-prints on a TTY only; 'json' always JSON. */
  readonly format?: 'auto' | 'json' | 'pretty';
  readonly name?: string;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? (process.env.QUICGATE_LOG_LEVEL as LevelWithSilent | undefined) ?? 'info';
  const format = options.format ?? 'auto';
  const pretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true);
  const base = { name: options.name ?? 'quicgate' };
  if (pretty) {
    return pino({ level, base }, pino.transport({ target: 'pino-pretty', options: { destination: 2, colorize: true } }));
  }
  // Synchronous writes to stderr: log lines are rare (connect, disconnect, errors) and must not be lost on exit.
  return pino({ level, base }, pino.destination({ dest: 2, sync: true }));
}

/** A logger that drops everything, for tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
