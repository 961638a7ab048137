/**
 * Per-user totals of ENDED sessions, for the per-user metrics (live sessions are added by the reader). A user
 * is kept while they have live sessions and for `retainMs` after their last session ended, then evicted, so
 * the `user` label's cardinality stays bounded by recently active users.
 */
import type { Clock } from '../clock.js';
import type { TrafficCounters } from './session.js';

export const DEFAULT_LEDGER_RETAIN_MS = 10 * 60_000;

export interface UserTotals {
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly packetsIn: number;
  readonly packetsOut: number;
  /** Ended sessions counted. */
  readonly sessions: number;
}

interface Entry {
  bytesIn: number;
  bytesOut: number;
  packetsIn: number;
  packetsOut: number;
  sessions: number;
  /** Monotonic ms of the last session end. */
  lastEnded: number;
}

export class UsageLedger {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: Clock;
  readonly retainMs: number;

  constructor(options: { readonly clock: Clock; readonly retainMs?: number }) {
    this.clock = options.clock;
    this.retainMs = options.retainMs ?? DEFAULT_LEDGER_RETAIN_MS;
  }

  /** Add an ended session's final counters to its user. */
  addEnded(user: string, counters: Readonly<TrafficCounters>): void {
    let entry = this.entries.get(user);
    if (entry === undefined) {
      entry = { bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsOut: 0, sessions: 0, lastEnded: 0 };
      this.entries.set(user, entry);
    }
    entry.bytesIn += counters.bytesIn;
    entry.bytesOut += counters.bytesOut;
    entry.packetsIn += counters.packetsIn;
    entry.packetsOut += counters.packetsOut;
    entry.sessions++;
    entry.lastEnded = this.clock.now();
  }

  get(user: string): UserTotals | undefined {
    const e = this.entries.get(user);
    return e === undefined ? undefined : { bytesIn: e.bytesIn, bytesOut: e.bytesOut, packetsIn: e.packetsIn, packetsOut: e.packetsOut, sessions: e.sessions };
  }

  users(): IterableIterator<string> {
    return this.entries.keys();
  }

  /**
   * Forget users without live sessions whose last session ended `retainMs` ago or more; returns them. A user
   * who is still connected is never evicted: their exported counters would drop by the ended sessions' bytes.
   */
  evict(hasLiveSessions: (user: string) => boolean): string[] {
    const now = this.clock.now();
    const evicted: string[] = [];
    for (const [user, entry] of this.entries) {
      if (now - entry.lastEnded >= this.retainMs && !hasLiveSessions(user)) {
        this.entries.delete(user);
        evicted.push(user);
      }
    }
    return evicted;
  }

  get size(): number {
    return this.entries.size;
  }
}
