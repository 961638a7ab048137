/**
 * What an operator command reads and writes. Commands take a CliIo instead of touching `process`, so tests run
 * the real command code in-process with their own stdin, captured output and a recorded exit.
 */
import type { Readable } from 'node:stream';
import { fail } from './fail.js';

/** stdin: a TTY (raw mode for hidden input) or a pipe. */
export type CliInput = Readable & { readonly isTTY?: boolean; setRawMode?(raw: boolean): unknown };

export interface CliOutput {
  write(text: string): unknown;
}

export interface CliIo {
  readonly stdin: CliInput;
  readonly stdout: CliOutput;
  readonly stderr: CliOutput;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Ends a failed command: the real CLI prints one line and exits with exitCodeFor(err); tests record it. */
  fail(err: unknown): void;
}

export function processIo(): CliIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, fail };
}

/** Runs a command action; whatever it throws ends the command through io.fail. */
export async function runAction(io: CliIo, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    io.fail(err);
  }
}
