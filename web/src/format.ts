/**
 * Numbers with units, the way the CLI prints them (the same formatters, bundled): rates in bit/s, sizes in
 * IEC bytes, durations short.
 */
import { formatRate, formatSize } from '../../src/config/units.js';

export const rate = (bytesPerSecond: number | null): string => formatRate(bytesPerSecond === null ? null : Math.round(bytesPerSecond));
export const size = (bytes: number): string => formatSize(Math.round(bytes));

/** "42 s", "5 min", "3 h 12 min", "4 d 2 h". */
export function span(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** Local time, to the second, for tables. */
export function clock(iso: string): string {
  const d = new Date(iso);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function percent(fraction: number): string {
  return `${Math.round(fraction * 100)} %`;
}
