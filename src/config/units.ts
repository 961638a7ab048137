/**
 * Rates, sizes and durations as people write them in config files, parsed exactly.
 *
 * Flow: split "<number> <unit>" -> decimal number as an exact (BigInt) mantissa and scale -> unit table lookup
 * (bits b vs bytes B, SI k/M/G/T = 1000^n vs IEC Ki/Mi/Gi/Ti = 1024^n) -> one rounding at the end.
 * Ambiguous spellings (K, KB, lowercase m/g/t, mbps) are rejected with QG_ERR_UNIT_INVALID rather than guessed.
 *
 * Plain numbers: a bare number is bytes for a size, and rejected for a rate (bits or bytes?) and a duration
 * (ms or s?).
 */
import { QuicgateError } from '../errors.js';

// Hand-written: the unit libraries on npm (bytes, filesize, ms, ...) round through floats, treat K/KB as 1024
// or accept bits and bytes loosely; we need exact bits-vs-bytes and SI-vs-IEC and clear rejections.

const PREFIXES: ReadonlyMap<string, bigint> = new Map([
  ['', 1n],
  ['k', 1000n],
  ['M', 1000n ** 2n],
  ['G', 1000n ** 3n],
  ['T', 1000n ** 4n],
  ['Ki', 1024n],
  ['Mi', 1024n ** 2n],
  ['Gi', 1024n ** 3n],
  ['Ti', 1024n ** 4n],
]);

const BIT_RATE_BASES = new Set(['bit/s', 'bits/s', 'b/s', 'bps']);
const BYTE_RATE_BASES = new Set(['B/s', 'byte/s', 'bytes/s', 'Bps']);
const BYTE_SIZE_BASES = new Set(['B', 'byte', 'bytes']);
const BIT_SIZE_BASES = new Set(['b', 'bit', 'bits']);

const DURATION_UNITS: ReadonlyMap<string, bigint> = new Map([
  ['d', 86_400_000n],
  ['h', 3_600_000n],
  ['m', 60_000n],
  ['s', 1000n],
  ['ms', 1n],
]);

export const RATE_FORMS =
  'a number and a unit: bits as bit/s, b/s or bps, bytes as B/s or Bps, with an optional prefix ' +
  'k M G T (x1000) or Ki Mi Gi Ti (x1024), e.g. "10 Mbit/s", "10Mbps", "1.5 MB/s", "512 KiB/s"';
export const SIZE_FORMS =
  'a whole number of bytes, or a number and a unit B with an optional prefix k M G T (x1000) or Ki Mi Gi Ti ' +
  '(x1024), e.g. "500 B", "64 KiB", "1.5 MB", "10 GiB"';
export const DURATION_FORMS =
  'a number and a unit ms, s, m (minutes), h or d, or several from largest to smallest, e.g. "250ms", "30s", ' +
  '"5m", "1h30m", "1d"';

interface Decimal {
  /** value = mantissa / 10^digits, exactly; scale = 10^digits */
  readonly mantissa: bigint;
  readonly digits: number;
  readonly scale: bigint;
}

const NUMBER_AND_UNIT = /^(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z/]*)$/;

function decimal(text: string): Decimal {
  const [whole = '', fraction = ''] = text.split('.');
  return { mantissa: BigInt(`${whole}${fraction}` || '0'), digits: fraction.length, scale: 10n ** BigInt(fraction.length) };
}

function invalid(kind: string, input: string, why: string, forms: string): QuicgateError {
  return new QuicgateError('QG_ERR_UNIT_INVALID', `invalid ${kind} "${input}": ${why}; expected ${forms}`, {
    details: { kind, input },
  });
}

/** mantissa / 10^digits as the nearest float: Number() rounds a decimal string correctly, once. */
function decimalToNumber(mantissa: bigint, digits: number): number {
  return Number(`${mantissa}e-${digits}`);
}

/** Why a unit was rejected, for the cases people actually write. */
function prefixProblem(prefix: string): string | null {
  if (prefix === 'K') return 'prefix "K" is ambiguous (1000 or 1024?): write k for 1000 or Ki for 1024';
  if (prefix === 'm') return 'prefix "m" means milli: write M for 10^6 or Mi for 2^20';
  if (prefix === 'g' || prefix === 't') return `prefix "${prefix}" is not a prefix: write ${prefix.toUpperCase()} or ${prefix.toUpperCase()}i`;
  if (/^[kmgt]i$/i.test(prefix)) return `prefix "${prefix}" is misspelt: IEC prefixes are written Ki, Mi, Gi, Ti`;
  return null;
}

function splitUnit(unit: string, bases: ReadonlySet<string>): { prefix: string; base: string } | null {
  for (const base of bases) {
    if (unit.endsWith(base)) return { prefix: unit.slice(0, unit.length - base.length), base };
  }
  return null;
}

/** Parses a rate such as "10 Mbit/s" or "1.5 MB/s" into bytes per second (may be fractional). */
export function parseRate(input: string): number {
  const text = input.trim();
  const m = NUMBER_AND_UNIT.exec(text);
  if (!m) return rejectRate(input, 'not a non-negative number followed by a unit');
  const value = decimal(m[1]!);
  const unit = m[2]!;
  if (unit === '') throw invalid('rate', input, 'a bare number is ambiguous (bits or bytes per second?)', RATE_FORMS);
  const bits = splitUnit(unit, BIT_RATE_BASES);
  const bytes = splitUnit(unit, BYTE_RATE_BASES);
  const found = bits ?? bytes;
  if (!found) return rejectRate(input, `unknown unit "${unit}"`);
  const multiplier = PREFIXES.get(found.prefix);
  if (multiplier === undefined) {
    return rejectRate(input, prefixProblem(found.prefix) ?? `unknown prefix "${found.prefix}" in unit "${unit}"`);
  }
  // x/8 = x*125/1000 keeps the value a terminating decimal.
  return bits
    ? decimalToNumber(value.mantissa * multiplier * 125n, value.digits + 3)
    : decimalToNumber(value.mantissa * multiplier, value.digits);
}

function rejectRate(input: string, why: string): never {
  throw invalid('rate', input, why, RATE_FORMS);
}

/** Parses a size such as "64 KiB", "1.5 MB" or "500" (bytes) into whole bytes. */
export function parseSize(input: string): number {
  const text = input.trim();
  const m = NUMBER_AND_UNIT.exec(text);
  if (!m) throw invalid('size', input, 'not a non-negative number followed by a unit', SIZE_FORMS);
  const value = decimal(m[1]!);
  const unit = m[2]!;
  let multiplier = 1n;
  if (unit !== '') {
    const found = splitUnit(unit, BYTE_SIZE_BASES);
    if (!found) {
      const why = splitUnit(unit, BIT_SIZE_BASES) ? `"${unit}" counts bits; sizes are in bytes (B)` : `unknown unit "${unit}"`;
      throw invalid('size', input, why, SIZE_FORMS);
    }
    const prefixed = PREFIXES.get(found.prefix);
    if (prefixed === undefined) {
      throw invalid('size', input, prefixProblem(found.prefix) ?? `unknown prefix "${found.prefix}" in unit "${unit}"`, SIZE_FORMS);
    }
    multiplier = prefixed;
  }
  const scaled = value.mantissa * multiplier;
  if (scaled % value.scale !== 0n) throw invalid('size', input, 'not a whole number of bytes', SIZE_FORMS);
  const bytes = scaled / value.scale;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('size', input, 'too large', SIZE_FORMS);
  return Number(bytes);
}

const DURATION_PART = /(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)(?![a-z])\s*/y;

/** Parses a duration such as "30s", "250ms" or "1h30m" into whole milliseconds. */
export function parseDuration(input: string): number {
  const text = input.trim();
  if (/^\d+(\.\d+)?$/.test(text)) {
    throw invalid('duration', input, 'a bare number is ambiguous (milliseconds or seconds?)', DURATION_FORMS);
  }
  if (text === '') throw invalid('duration', input, 'empty', DURATION_FORMS);
  let at = 0;
  let total = 0n; // in ms * 10^scale, accumulated over a common scale
  let scale = 1n;
  let lastUnit = Infinity;
  while (at < text.length) {
    DURATION_PART.lastIndex = at;
    const m = DURATION_PART.exec(text);
    if (!m) throw invalid('duration', input, `cannot read "${text.slice(at)}"`, DURATION_FORMS);
    const unitMs = DURATION_UNITS.get(m[2]!)!;
    if (Number(unitMs) >= lastUnit) {
      throw invalid('duration', input, 'parts must go from the largest unit to the smallest, each once', DURATION_FORMS);
    }
    lastUnit = Number(unitMs);
    const part = decimal(m[1]!);
    // Bring both to the larger scale so the sum stays exact.
    if (part.scale > scale) {
      total *= part.scale / scale;
      scale = part.scale;
    }
    total += part.mantissa * unitMs * (scale / part.scale);
    at = DURATION_PART.lastIndex;
  }
  if (total % scale !== 0n) throw invalid('duration', input, 'not a whole number of milliseconds', DURATION_FORMS);
  const ms = total / scale;
  if (ms > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('duration', input, 'too large', DURATION_FORMS);
  return Number(ms);
}

// ---- display -------------------------------------------------------------------------------------------

export interface FormatOptions {
  /**
   * true: the shortest form that parses back to exactly the same number (for writing config files);
   * false (default): rounded to 3 significant digits for people.
   */
  readonly exact?: boolean;
}

function trimNumber(value: number, digits: number): string {
  return Number(value.toFixed(digits)).toString();
}

/** First unit (largest first) where value/unit reads well and, if exact, parses back to the same value. */
function pickUnit(
  value: number,
  units: readonly (readonly [string, number])[],
  exact: boolean,
  parse: (s: string) => number,
): string | null {
  for (const [name, size] of units) {
    const scaled = value / size;
    if (scaled < 1) continue;
    if (!exact) return `${trimNumber(scaled, scaled >= 100 ? 0 : scaled >= 10 ? 1 : 2)} ${name}`;
    for (let digits = 0; digits <= 3; digits++) {
      const text = `${trimNumber(scaled, digits)} ${name}`;
      if (parsesTo(parse, text, value)) return text;
    }
  }
  return null;
}

function parsesTo(parse: (s: string) => number, text: string, value: number): boolean {
  try {
    return parse(text) === value;
  } catch {
    return false; // e.g. a rounded size that is not whole bytes
  }
}

/** Shortest candidate, a decimal point counting one extra; ties go to the earlier one. */
function shortest(candidates: readonly (string | null)[]): string {
  const cost = (c: string): number => c.length + (c.includes('.') ? 1 : 0);
  let best: string | null = null;
  for (const c of candidates) if (c !== null && (best === null || cost(c) < cost(best))) best = c;
  return best ?? '';
}

const BIT_RATE_UNITS = [
  ['Gbit/s', 1e9 / 8],
  ['Mbit/s', 1e6 / 8],
  ['kbit/s', 1e3 / 8],
  ['bit/s', 1 / 8],
] as const;
const BYTE_RATE_UNITS = [
  ['GiB/s', 1024 ** 3],
  ['MiB/s', 1024 ** 2],
  ['KiB/s', 1024],
  ['GB/s', 1e9],
  ['MB/s', 1e6],
  ['kB/s', 1e3],
] as const;

/** Bytes per second as a rate; shown in bits per second (network convention); null means unlimited. */
export function formatRate(bytesPerSecond: number | null, options: FormatOptions = {}): string {
  if (bytesPerSecond === null) return 'unlimited';
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return String(bytesPerSecond);
  if (bytesPerSecond === 0) return '0 bit/s';
  if (!options.exact) return pickUnit(bytesPerSecond, BIT_RATE_UNITS, false, parseRate) ?? `${bytesPerSecond} B/s`;
  const withPrefix = shortest([
    pickUnit(bytesPerSecond, BIT_RATE_UNITS, true, parseRate),
    pickUnit(bytesPerSecond, BYTE_RATE_UNITS, true, parseRate),
  ]);
  return withPrefix !== '' ? withPrefix : `${bytesPerSecond} B/s`;
}

const SIZE_UNITS_IEC = [
  ['TiB', 1024 ** 4],
  ['GiB', 1024 ** 3],
  ['MiB', 1024 ** 2],
  ['KiB', 1024],
] as const;
const SIZE_UNITS_SI = [
  ['TB', 1e12],
  ['GB', 1e9],
  ['MB', 1e6],
  ['kB', 1e3],
] as const;

/** Bytes as a size: IEC units for display; with exact, the shortest IEC, SI or plain form without loss. */
export function formatSize(bytes: number, options: FormatOptions = {}): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) return String(bytes);
  if (!options.exact) return bytes < 1024 ? `${bytes} B` : (pickUnit(bytes, SIZE_UNITS_IEC, false, parseSize) ?? `${bytes} B`);
  const withPrefix = shortest([pickUnit(bytes, SIZE_UNITS_IEC, true, parseSize), pickUnit(bytes, SIZE_UNITS_SI, true, parseSize)]);
  return withPrefix !== '' ? withPrefix : `${bytes} B`;
}

/** Milliseconds as a compound duration such as "1h30m" or "250ms"; parses back exactly for whole ms. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return String(ms);
  let rest = Math.round(ms);
  if (rest === 0) return '0s';
  let out = '';
  for (const [name, size] of DURATION_UNITS) {
    const n = Math.floor(rest / Number(size));
    if (n > 0) {
      out += `${n}${name}`;
      rest -= n * Number(size);
    }
  }
  return out;
}
