/** A real pino logger whose JSON lines are kept in memory, for asserting what was logged. */
import { pino, type Logger } from 'pino';

export interface CapturedLog {
  readonly logger: Logger;
  readonly lines: Array<Record<string, unknown>>;
  /** Lines whose msg contains `text`. */
  matching(text: string): Array<Record<string, unknown>>;
}

export function captureLog(level: pino.Level = 'debug'): CapturedLog {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return {
    logger,
    lines,
    matching: (text) => lines.filter((l) => typeof l.msg === 'string' && l.msg.includes(text)),
  };
}
