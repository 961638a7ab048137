/**
 * Running a bench's cases over several client transports in one run and printing them side by side: which
 * transports (TRANSPORTS), in which order per round (alternating, so the machine's load drifts over both), and
 * one table with a column per transport at the end. Shared by bench/limits.ts and bench/fairness.ts.
 */
import { TRANSPORTS, type TunnelTransport } from '../../test/e2e/helpers/quicgate.js';

/**
 * The transports named in `text` (space-separated; `fallback` when empty or undefined), in that order, each
 * once. quic and h3 cannot be served by one gateway (both take the UDP port; see withTransports), so they are
 * refused together.
 */
export function parseTransports(text: string | undefined, fallback: readonly TunnelTransport[]): TunnelTransport[] {
  const names = (text ?? '').split(/\s+/).filter(Boolean);
  if (names.length === 0) return [...fallback];
  const out: TunnelTransport[] = [];
  for (const name of names) {
    if (!(TRANSPORTS as readonly string[]).includes(name)) {
      throw new Error(`TRANSPORTS: unknown transport "${name}"; expected some of ${TRANSPORTS.join(', ')}`);
    }
    if (out.includes(name as TunnelTransport)) throw new Error(`TRANSPORTS: "${name}" named twice`);
    out.push(name as TunnelTransport);
  }
  if (out.includes('quic') && out.includes('h3')) {
    throw new Error('TRANSPORTS: quic and h3 both take the gateway UDP port; measure them in separate runs (e.g. "quic h2", then "h3 h2")');
  }
  return out;
}

/**
 * The order of `transports` in round `round` (0, 1, ...): as given in even rounds, reversed in odd ones (A B,
 * B A, A B, ...), so neither transport always runs first after a reload, and the transport that ends one round
 * starts the next (no client restart between rounds).
 */
export function roundOrder<T>(transports: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...transports] : [...transports].reverse();
}

/**
 * A table of one row per case and one column per transport, filled in any order (cells missing: "-"), printed
 * once at the end of a run.
 */
export class SideBySide {
  private readonly rows: string[] = [];
  private readonly cells = new Map<string, string>();

  constructor(
    private readonly caseHeading: string,
    private readonly columns: readonly string[],
  ) {}

  set(row: string, column: string, text: string): void {
    if (!this.columns.includes(column)) throw new Error(`SideBySide: unknown column "${column}"`);
    if (!this.rows.includes(row)) this.rows.push(row);
    this.cells.set(`${row}\u0000${column}`, text);
  }

  /** The table as lines: a heading, then the rows in the order they were first set, columns padded to width. */
  lines(): string[] {
    const table = [[this.caseHeading, ...this.columns], ...this.rows.map((row) => [row, ...this.columns.map((c) => this.cells.get(`${row}\u0000${c}`) ?? '-')])];
    const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
    return table.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join(' | ').trimEnd());
  }
}
