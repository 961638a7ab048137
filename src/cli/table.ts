/**
 * Plain text tables for a terminal: a header row, columns padded to their widest cell, two spaces between
 * them, no trailing spaces. Cells are made safe to print (control characters replaced): some come from the
 * gateway or from files, and a stray escape sequence must not reach the operator's terminal.
 */
import { formatDuration, formatRate, formatSize } from '../config/units.js';

export interface Column<Row> {
  readonly header: string;
  readonly cell: (row: Row) => string;
  /** Numbers read better right-aligned. */
  readonly align?: 'left' | 'right';
}

export function renderTable<Row>(rows: readonly Row[], columns: readonly Column<Row>[]): string {
  const cells = rows.map((row) => columns.map((column) => printable(column.cell(row))));
  const widths = columns.map((column, i) => Math.max(column.header.length, ...cells.map((r) => r[i]?.length ?? 0)));
  const line = (values: readonly string[]): string =>
    values
      .map((value, i) => (columns[i]?.align === 'right' ? value.padStart(widths[i] ?? 0) : value.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/** Lines of "label  value" with the values aligned, for one object (e.g. stats). */
export function renderPairs(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...pairs.map(([label]) => label.length));
  return pairs.map(([label, value]) => `${label.padEnd(width)}  ${printable(value)}`.trimEnd()).join('\n') + '\n';
}

export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** Bytes per second for people, in bits per second (network convention); null is unlimited. */
export function rateCell(bytesPerSecond: number | null): string {
  return formatRate(bytesPerSecond);
}

export function sizeCell(bytes: number): string {
  return formatSize(bytes);
}

/** Time since an ISO 8601 instant, in whole seconds, e.g. "1h5m3s"; "?" when it does not parse. */
export function ageCell(isoTime: string, nowMs: number): string {
  const then = Date.parse(isoTime);
  if (Number.isNaN(then)) return '?';
  return formatDuration(Math.max(0, Math.floor((nowMs - then) / 1000)) * 1000);
}
