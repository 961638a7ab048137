import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isQuicgateError } from '../../src/errors.js';
import { formatDuration, formatRate, formatSize, parseDuration, parseRate, parseSize } from '../../src/config/units.js';

function unitError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isQuicgateError(err, 'QG_ERR_UNIT_INVALID')) return err.message;
    throw err;
  }
  throw new Error('expected QG_ERR_UNIT_INVALID');
}

describe('parseRate', () => {
  it.each([
    ['10 Mbit/s', 1_250_000],
    ['10Mbps', 1_250_000],
    ['10 Mb/s', 1_250_000],
    ['10 MB/s', 10_000_000],
    ['10 MBps', 10_000_000],
    ['1.5 MB/s', 1_500_000],
    ['512 KiB/s', 524_288],
    ['100 kbit/s', 12_500],
    ['1 Gbit/s', 125_000_000],
    ['1 Gibit/s', 1024 ** 3 / 8],
    ['8 bit/s', 1],
    ['1 B/s', 1],
    ['.5 MB/s', 500_000],
  ])('%s = %d bytes/s', (text, bytesPerSecond) => {
    expect(parseRate(text)).toBe(bytesPerSecond);
  });

  it('keeps bits and bytes apart by the case of b', () => {
    expect(parseRate('1 MB/s') / parseRate('1 Mbit/s')).toBe(8);
    expect(parseRate('1 kB/s') / parseRate('1 kb/s')).toBe(8);
  });

  it('keeps SI and IEC prefixes apart', () => {
    expect(parseRate('1 kB/s')).toBe(1000);
    expect(parseRate('1 KiB/s')).toBe(1024);
    expect(parseRate('1 MiB/s')).toBe(1_048_576);
    expect(parseRate('1 TB/s')).toBe(1e12);
  });

  it('allows fractional bytes per second and is exact for decimal input', () => {
    expect(parseRate('1 bit/s')).toBe(0.125);
    expect(parseRate('1.1 kB/s')).toBe(1100); // 1.1 * 1000 in floats would be 1100.0000000000002
    expect(parseRate('0.3 kbit/s')).toBe(37.5);
  });

  it.each([
    ['10', 'bare number is ambiguous'],
    ['10 mbps', 'prefix "m" means milli'],
    ['10 Kbps', 'prefix "K" is ambiguous'],
    ['10 KB/s', 'prefix "K" is ambiguous'],
    ['10 kib/s', 'IEC prefixes are written Ki'],
    ['10 furlongs/s', 'unknown unit'],
    ['-5 Mbit/s', 'not a non-negative number'],
    ['fast', 'not a non-negative number'],
    ['', 'not a non-negative number'],
    ['10 MB', 'unknown unit'],
  ])('rejects %j (%s) and lists the accepted forms', (text, why) => {
    const message = unitError(() => parseRate(text));
    expect(message).toContain(why);
    expect(message).toContain('e.g. "10 Mbit/s"');
  });
});

describe('parseSize', () => {
  it.each([
    ['64 KiB', 65_536],
    ['1.5 MB', 1_500_000],
    ['10 GiB', 10 * 1024 ** 3],
    ['500 B', 500],
    ['500', 500],
    ['1 kB', 1000],
    ['1.5 KiB', 1536],
    ['2 TiB', 2 * 1024 ** 4],
    ['7 bytes', 7],
  ])('%s = %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each([
    ['0.5 B', 'not a whole number of bytes'],
    ['1.0001 kB', 'not a whole number of bytes'],
    ['64 Kb', 'counts bits'],
    ['64 Mbit', 'counts bits'],
    ['64 KB', 'prefix "K" is ambiguous'],
    ['1 mB', 'prefix "m" means milli'],
    ['99999999999 TB', 'too large'],
    ['lots', 'not a non-negative number'],
  ])('rejects %j (%s)', (text, why) => {
    const message = unitError(() => parseSize(text));
    expect(message).toContain(why);
    expect(message).toContain('"64 KiB"');
  });
});

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['1h', 3_600_000],
    ['5m', 300_000],
    ['250ms', 250],
    ['1d', 86_400_000],
    ['1h30m', 5_400_000],
    ['1h 30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['2d3h4m5s6ms', 2 * 86_400_000 + 3 * 3_600_000 + 4 * 60_000 + 5_000 + 6],
    ['0.1s', 100],
  ])('%s = %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    ['30', 'bare number is ambiguous'],
    ['30m1h', 'largest unit to the smallest'],
    ['1m1m', 'largest unit to the smallest'],
    ['0.5ms', 'not a whole number of milliseconds'],
    ['5 minutes', 'cannot read'],
    ['1h30', 'cannot read "30"'],
    ['', 'empty'],
  ])('rejects %j (%s)', (text, why) => {
    const message = unitError(() => parseDuration(text));
    expect(message).toContain(why);
    expect(message).toContain('"1h30m"');
  });
});

describe('format', () => {
  it('shows rates in bits per second for people', () => {
    expect(formatRate(2_500_000)).toBe('20 Mbit/s');
    expect(formatRate(12_500)).toBe('100 kbit/s');
    expect(formatRate(null)).toBe('unlimited');
  });

  it('shows sizes in IEC units and durations as compounds', () => {
    expect(formatSize(65_536)).toBe('64 KiB');
    expect(formatSize(1536)).toBe('1.5 KiB');
    expect(formatSize(100)).toBe('100 B');
    expect(formatDuration(5_400_000)).toBe('1h30m');
    expect(formatDuration(250)).toBe('250ms');
    expect(formatDuration(0)).toBe('0s');
  });

  it('exact rates parse back to the same number', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.001, max: 1e12, noNaN: true }), (bytesPerSecond) => {
        expect(parseRate(formatRate(bytesPerSecond, { exact: true }))).toBe(bytesPerSecond);
      }),
    );
    expect(formatRate(1_500_000, { exact: true })).toBe('12 Mbit/s');
    expect(formatRate(524_288, { exact: true })).toBe('512 KiB/s');
  });

  it('exact sizes and durations parse back to the same number', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 50 }), (n) => {
        expect(parseSize(formatSize(n, { exact: true }))).toBe(n);
        expect(parseDuration(formatDuration(n))).toBe(n);
      }),
    );
    expect(formatSize(1_500_000, { exact: true })).toBe('1.5 MB');
  });
});
