/**
 * Bounds on HTTP/3 sessions that carry no authenticated tunnel yet: what connection-guard.ts does for HTTP/2
 * connections, at the only level the library lets us act on for HTTP/3, its WebTransport session requests.
 *
 *   CONNECT request (the library's request callback, before credentials are checked)
 *     ─► source blocked (throttled past its budget)? ─► refused at once, no password work   refused{source_blocked}
 *     ─► pending ≥ max_pending / per source ≥ max_pending_per_source ─► refused at once   refused{limit_total|limit_source}
 *     ─► pending, deadline handshake_timeout armed (admission, the session coming up, its control stream)
 *   established() (the tunnel's WebTransportConnection is handed over) or ended() (refused, failed) ─► not pending
 *   deadline ─► the session (if it came up) is closed                                            refused{connect_timeout}
 *
 * QUIC connections that never send a CONNECT, and the QUIC handshake itself, are h3-connection-guard.ts's (on
 * their datagrams: the library's QUIC server has no per-connection hook, docs/robustness.md).
 */
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { pendingRefusal, type ConnectionGuardOptions } from './connection-guard.js';
import { sourceKey } from './source-key.js';

export const H3_GUARD_REASONS = ['connect_timeout', 'limit_total', 'limit_source', 'source_blocked'] as const;
export type H3GuardReason = (typeof H3_GUARD_REASONS)[number];

/** The HTTP/2 guard's bounds and deadline, applied to session requests. */
export type H3SessionGuardOptions = ConnectionGuardOptions;

export interface H3SessionGuardStats {
  /** HTTP/3 session requests without an established tunnel now. */
  readonly pending: number;
  /** HTTP/3 session requests refused or closed by the guard since start, by reason. */
  readonly closed: Readonly<Record<H3GuardReason, number>>;
}

/** One session request between its CONNECT and its tunnel. */
export interface H3Pending {
  /** The deadline passed: the caller must not set the session up (it is, or will be, closed). */
  readonly expired: boolean;
  /** The library's session for this request arrived: closed by the deadline if it comes first. */
  attach(close: () => void): void;
  /** Its tunnel is up: no longer pending. */
  established(): void;
  /** Refused or failed before its tunnel: no longer pending. Idempotent. */
  ended(): void;
}

export class H3SessionGuard {
  private readonly clock: Clock;
  private readonly bySource = new Map<string, number>();
  private total = 0;
  private readonly closedCounts = Object.fromEntries(H3_GUARD_REASONS.map((r) => [r, 0])) as Record<H3GuardReason, number>;
  private limitLogged = false;

  constructor(private readonly options: H3SessionGuardOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** A CONNECT from `address` arrived: its pending entry, or why it is refused (counted). */
  begin(address: string): H3Pending | H3GuardReason {
    const source = sourceKey(address);
    const refusal = pendingRefusal(this.options, address, source, this.total, this.bySource);
    if (refusal !== null) {
      this.closedCounts[refusal]++;
      if (refusal === 'limit_total' && !this.limitLogged) {
        this.limitLogged = true;
        this.options.logger.warn({ pending: this.total, limit: this.options.maxPending }, 'too many HTTP/3 sessions without a tunnel; new ones are refused');
      }
      return refusal;
    }
    return this.track(source);
  }

  stats(): H3SessionGuardStats {
    return { pending: this.total, closed: { ...this.closedCounts } };
  }

  private track(source: string): H3Pending {
    this.total++;
    this.bySource.set(source, (this.bySource.get(source) ?? 0) + 1);
    let done = false;
    let expired = false;
    let close: (() => void) | null = null;
    const release = (): void => {
      if (done) return;
      done = true;
      timer.cancel();
      this.total--;
      const left = (this.bySource.get(source) ?? 1) - 1;
      if (left > 0) this.bySource.set(source, left);
      else this.bySource.delete(source);
      if (this.total < this.options.maxPending / 2) this.limitLogged = false;
    };
    const timer: TimerHandle = this.clock.setTimeout(() => {
      if (done) return;
      expired = true;
      this.closedCounts.connect_timeout++;
      release();
      close?.();
    }, this.options.handshakeTimeoutMs);
    return {
      get expired() {
        return expired;
      },
      attach(fn) {
        if (expired) fn();
        else close = fn;
      },
      established: release,
      ended: release,
    };
  }
}
