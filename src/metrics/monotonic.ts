/**
 * Keeps exported counter values from ever going down while a series exists. The gateway's totals should be
 * monotonic already; if one dips (e.g. an ended session's bytes leave a per-user sum too early), Prometheus
 * would read a counter reset and count the whole value again, so we hold the high-water mark instead.
 */
export class HighWaterMarks {
  private marks = new Map<string, number>();
  private seen = new Map<string, number>();

  /** Starts a scrape: series not reported during it are forgotten by endScrape(). */
  beginScrape(): void {
    this.seen = new Map();
  }

  /** The value to export for `key`: never below what was exported before in this series' lifetime. */
  hold(key: string, value: number): number {
    const safe = Number.isFinite(value) && value > 0 ? value : 0;
    const held = Math.max(this.marks.get(key) ?? 0, safe);
    this.seen.set(key, held);
    return held;
  }

  /** Forgets series that were not reported in this scrape, so a user who comes back starts afresh. */
  endScrape(): void {
    this.marks = this.seen;
  }
}
