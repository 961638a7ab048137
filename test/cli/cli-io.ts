/**
 * A CliIo for running operator commands in-process: stdin from a string (a pipe) or a fake terminal, output
 * captured, failures recorded with the exit code and the one line the real CLI would print.
 */
import { PassThrough, Readable } from 'node:stream';
import { Command } from 'commander';
import { describeFailure, exitCodeFor } from '../../src/cli/fail.js';
import type { CliInput, CliIo } from '../../src/cli/io.js';
import { registerSessionsCommands } from '../../src/cli/sessions-command.js';
import { registerStatsCommand } from '../../src/cli/stats-command.js';
import { registerUsersCommands } from '../../src/cli/users-command.js';

export interface Failure {
  readonly exitCode: number;
  readonly line: string;
  readonly error: unknown;
}

export interface TestIo extends CliIo {
  readonly failures: Failure[];
  out(): string;
  err(): string;
}

export interface TestIoOptions {
  /** Piped stdin text; ignored when `stdin` is given. */
  readonly input?: string;
  readonly stdin?: CliInput;
  readonly env?: Record<string, string | undefined>;
}

export function testIo(options: TestIoOptions = {}): TestIo {
  let out = '';
  let err = '';
  const failures: Failure[] = [];
  return {
    stdin: options.stdin ?? Readable.from([Buffer.from(options.input ?? '')]),
    stdout: { write: (text: string) => void (out += text) },
    stderr: { write: (text: string) => void (err += text) },
    env: options.env ?? {},
    failures,
    fail(error: unknown) {
      const line = describeFailure(error);
      err += `quicgate: ${line}\n`;
      failures.push({ exitCode: exitCodeFor(error), line, error });
    },
    out: () => out,
    err: () => err,
  };
}

/** A terminal: isTTY, raw mode recorded; `type()` feeds keystrokes. */
export class FakeTerminal extends PassThrough {
  readonly isTTY = true;
  readonly rawModes: boolean[] = [];
  setRawMode(raw: boolean): this {
    this.rawModes.push(raw);
    return this;
  }
  type(text: string): void {
    this.write(Buffer.from(text));
  }
}

/** The operator commands on a commander program that throws instead of exiting, its own output captured. */
export function operatorProgram(io: CliIo): { program: Command; help: () => string } {
  let help = '';
  const program = new Command('quicgate')
    .exitOverride()
    .configureOutput({ writeOut: (s) => void (help += s), writeErr: (s) => void (help += s) });
  registerUsersCommands(program, io);
  registerSessionsCommands(program, io);
  registerStatsCommand(program, io);
  return { program, help: () => help };
}

/** Runs `quicgate ...args` on a fresh program. */
export async function run(io: CliIo, ...args: string[]): Promise<void> {
  await operatorProgram(io).program.parseAsync(args, { from: 'user' });
}
