import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readHidden, readLine } from '../../src/cli/prompt.js';
import { FakeTerminal } from './cli-io.js';

function collect(): { write(text: string): void; text: () => string } {
  let text = '';
  return { write: (t: string) => void (text += t), text: () => text };
}

describe('readHidden', () => {
  it('ignores escape sequences and other control keys, supports Ctrl-U, and treats CR LF as one Enter', async () => {
    const terminal = new FakeTerminal();
    const output = collect();
    const answers = readHidden(terminal, output, ['a: ', 'b: ']);
    terminal.type('wrong\u0015ri\u001b[Dgh\u0001t\r\n');
    terminal.type('pässwörd\r');
    expect(await answers).toEqual(['right', 'pässwörd']);
    expect(output.text()).toBe('a: \nb: \n');
    expect(terminal.rawModes).toEqual([true, false]);
  });

  it('cancels on Ctrl-C and restores the terminal', async () => {
    const terminal = new FakeTerminal();
    const answers = readHidden(terminal, collect(), ['a: ']);
    terminal.type('abc\u0003');
    await expect(answers).rejects.toThrow('cancelled');
    expect(terminal.rawModes).toEqual([true, false]);
  });

  it('cancels when the input ends', async () => {
    const terminal = new FakeTerminal();
    const answers = readHidden(terminal, collect(), ['a: ']);
    terminal.end();
    await expect(answers).rejects.toThrow('cancelled');
    expect(terminal.rawModes).toEqual([true, false]);
  });
});

describe('readLine', () => {
  it('reads a line split over chunks, a multi-byte character split too', async () => {
    const bytes = Buffer.from('grüße\nrest');
    expect(await readLine(Readable.from([bytes.subarray(0, 3), bytes.subarray(3)]))).toBe('grüße');
  });

  it('takes a last line without newline, and null for nothing', async () => {
    expect(await readLine(Readable.from([Buffer.from('no-newline')]))).toBe('no-newline');
    expect(await readLine(Readable.from([]))).toBeNull();
  });
});
