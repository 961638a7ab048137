import { describe, expect, it } from 'vitest';
import { Verdicts } from '../../bench/lib/bed.js';
import { parseTransports, roundOrder, SideBySide } from '../../bench/lib/per-transport.js';

describe('parseTransports', () => {
  it('takes the fallback when TRANSPORTS is unset or blank', () => {
    expect(parseTransports(undefined, ['quic', 'h2'])).toEqual(['quic', 'h2']);
    expect(parseTransports('  ', ['quic', 'h2'])).toEqual(['quic', 'h2']);
  });

  it('keeps the order given', () => {
    expect(parseTransports(' h2  quic ', ['quic'])).toEqual(['h2', 'quic']);
    expect(parseTransports('h3 h2', ['quic'])).toEqual(['h3', 'h2']);
  });

  it('refuses an unknown name, a name twice, and quic beside h3, saying why', () => {
    expect(() => parseTransports('quic http2', [])).toThrow('unknown transport "http2"; expected some of quic, h2, h3');
    expect(() => parseTransports('h2 h2', [])).toThrow('"h2" named twice');
    expect(() => parseTransports('quic h3', [])).toThrow('quic and h3 both take the gateway UDP port');
  });
});

describe('roundOrder', () => {
  it('alternates A B, B A, A B so the transport that ends a round starts the next', () => {
    const rounds = [0, 1, 2, 3].map((r) => roundOrder(['quic', 'h2'], r));
    expect(rounds).toEqual([
      ['quic', 'h2'],
      ['h2', 'quic'],
      ['quic', 'h2'],
      ['h2', 'quic'],
    ]);
    for (let r = 1; r < rounds.length; r++) expect(rounds[r]![0]).toBe(rounds[r - 1]!.at(-1));
  });

  it('does not change the array it is given', () => {
    const given = ['quic', 'h2', 'h3'];
    expect(roundOrder(given, 1)).toEqual(['h3', 'h2', 'quic']);
    expect(given).toEqual(['quic', 'h2', 'h3']);
  });
});

describe('SideBySide', () => {
  it('prints a row per case in first-set order, a padded column per transport, "-" where a cell is missing', () => {
    const t = new SideBySide('case', ['quic', 'h2']);
    t.set('1 Mbit/s tcp1', 'h2', '0.983 PASS');
    t.set('1 Mbit/s tcp1', 'quic', '0.9 MISS');
    t.set('10 Mbit/s udp2x', 'quic', '1.000 PASS');
    expect(t.lines()).toEqual([
      'case            | quic       | h2',
      '1 Mbit/s tcp1   | 0.9 MISS   | 0.983 PASS',
      '10 Mbit/s udp2x | 1.000 PASS | -',
    ]);
  });

  it('overwrites a cell set twice and refuses an unknown column', () => {
    const t = new SideBySide('case', ['quic']);
    t.set('a', 'quic', 'first');
    t.set('a', 'quic', 'second');
    expect(t.lines()).toEqual(['case | quic', 'a    | second']);
    expect(() => t.set('a', 'h3', 'x')).toThrow('unknown column "h3"');
  });
});

describe('Verdicts', () => {
  it('counts misses in all and per transport', () => {
    const v = new Verdicts();
    expect(v.verdict(true, 'quic')).toBe('PASS');
    expect(v.verdict(false, 'quic')).toBe('MISS');
    expect(v.verdict(true, 'h2')).toBe('PASS');
    expect(v.verdict(false)).toBe('MISS');
    expect(v.misses).toBe(2);
    expect(v.summary(Date.now())).toMatch(/^# 2 goal\(s\) missed \(missed per transport: quic 1 of 2, h2 0 of 1\); \d+ s$/);
  });

  it('says all goals met when none missed', () => {
    const v = new Verdicts();
    v.verdict(true, 'h2');
    expect(v.summary(Date.now())).toMatch(/^# all goals met \(missed per transport: h2 0 of 1\); \d+ s$/);
  });
});
