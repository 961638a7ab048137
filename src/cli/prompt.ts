/**
 * Reading a new password: on a terminal, asked twice without echo (raw mode, prompts on stderr so stdout stays
 * clean for scripts); from a pipe (or with --password-stdin), the first line of stdin, so scripts can do
 *   printf '%s\n' "$PW" | quicgate users add alice
 */
import { StringDecoder } from 'node:string_decoder';
import { QuicgateError } from '../errors.js';
import type { CliInput, CliIo, CliOutput } from './io.js';

export const MIN_PASSWORD_LENGTH = 8;
/** Longer than any password a person types; keeps a mistaken `< bigfile` from being hashed. */
export const MAX_PASSWORD_LENGTH = 1024;

export interface NewPasswordOptions {
  /** Read one line from stdin even when it is a terminal; never prompt. */
  readonly passwordStdin?: boolean;
}

export async function readNewPassword(io: CliIo, options: NewPasswordOptions = {}): Promise<string> {
  if (options.passwordStdin === true || io.stdin.isTTY !== true || io.stdin.setRawMode === undefined) {
    const line = await readLine(io.stdin);
    if (line === null) throw passwordProblem('no password on stdin (expected one line)');
    return checkNewPassword(line);
  }
  const [first, second] = await readHidden(io.stdin, io.stderr, ['New password: ', 'Repeat password: ']);
  if (first !== second) throw passwordProblem('the two passwords do not match; nothing was changed');
  return checkNewPassword(first ?? '');
}

export function checkNewPassword(password: string): string {
  if (password.length === 0) throw passwordProblem('empty password');
  if (password.length < MIN_PASSWORD_LENGTH) throw passwordProblem(`password too short: expected at least ${MIN_PASSWORD_LENGTH} characters`);
  if (password.length > MAX_PASSWORD_LENGTH) throw passwordProblem(`password too long: expected at most ${MAX_PASSWORD_LENGTH} characters`);
  return password;
}

function passwordProblem(message: string): QuicgateError {
  return new QuicgateError('QG_ERR_CONFIG_INVALID', message);
}

/** The first line of `input` without its line ending; null when the stream ends with nothing on it. */
export function readLine(input: CliInput): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    let text = '';
    const finish = (line: string | null): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      input.pause();
      resolve(line);
    };
    const onData = (chunk: Buffer | string): void => {
      text += typeof chunk === 'string' ? chunk : decoder.write(chunk);
      const newline = text.indexOf('\n');
      if (newline >= 0) finish(text.slice(0, newline).replace(/\r$/, ''));
      else if (text.length > MAX_PASSWORD_LENGTH * 4) finish(text); // checkNewPassword refuses it
    };
    const onEnd = (): void => {
      text += decoder.end();
      finish(text === '' ? null : text.replace(/\r$/, ''));
    };
    const onError = (err: Error): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      reject(err);
    };
    input.on('data', onData);
    input.once('end', onEnd);
    input.once('error', onError);
    input.resume();
  });
}

const CTRL_C = '\u0003';
const CTRL_D = '\u0004';
const CTRL_U = '\u0015';
const BACKSPACES = new Set(['\u007f', '\b']);
/** Escape sequences (arrow keys, function keys): ESC [ ... final byte, or ESC and one character. */
const ESCAPE_SEQUENCE = /^\u001b(?:\[[0-?]*[ -/]*[@-~]|.)?/s;

/**
 * Answers to `prompts`, typed on a terminal in raw mode so nothing is echoed. Text typed ahead (or pasted with
 * newlines) carries over to the next prompt. Ctrl-C cancels; the terminal mode is restored in every case.
 */
export function readHidden(input: CliInput, output: CliOutput, prompts: readonly string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    const answers: string[] = [];
    let current = '';
    let pending = '';
    let done = false;
    let afterCarriageReturn = false; // "\r\n" is one Enter

    const stop = (): void => {
      done = true;
      input.off('data', onData);
      input.off('end', onEnd);
      input.setRawMode?.(false);
      input.pause();
    };
    const cancel = (reason: string): void => {
      stop();
      output.write('\n');
      reject(new Error(reason));
    };
    const submit = (): void => {
      answers.push(current);
      current = '';
      output.write('\n');
      if (answers.length === prompts.length) {
        stop();
        resolve(answers);
      } else output.write(prompts[answers.length] ?? '');
    };
    const onData = (chunk: Buffer | string): void => {
      pending += typeof chunk === 'string' ? chunk : decoder.write(chunk);
      while (pending.length > 0 && !done) {
        const escape = ESCAPE_SEQUENCE.exec(pending);
        if (escape !== null) {
          pending = pending.slice(escape[0].length);
          continue;
        }
        const char = String.fromCodePoint(pending.codePointAt(0) ?? 0);
        pending = pending.slice(char.length);
        const skip = char === '\n' && afterCarriageReturn;
        afterCarriageReturn = char === '\r';
        if (skip) continue;
        if (char === '\r' || char === '\n') submit();
        else if (char === CTRL_C) cancel('cancelled');
        else if (char === CTRL_D) {
          if (current === '') cancel('cancelled (end of input)');
          else submit();
        } else if (BACKSPACES.has(char)) current = Array.from(current).slice(0, -1).join('');
        else if (char === CTRL_U) current = '';
        else if (char >= ' ') current += char;
        // other control characters are ignored
      }
    };
    const onEnd = (): void => cancel('cancelled (end of input)');

    input.setRawMode?.(true);
    output.write(prompts[0] ?? '');
    input.on('data', onData);
    input.once('end', onEnd);
    input.resume();
  });
}
