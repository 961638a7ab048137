/**
 * Bounds on the native QUIC listener's connections that carry no admitted session (the HTTP/2 listener's
 * ConnectionGuard does the same on TCP): the addon asks before it creates a connection for a new Initial.
 *
 *   Initial from a source ─► blocked by the throttle?            ─► refused: closed{source_blocked}
 *                          ─► pending ≥ max_pending / per source ≥ max_pending_per_source ─► closed{limit_total|limit_source}
 *                          ─► pending, deadline handshake_timeout armed (the addon also ends a TLS handshake
 *                             that takes longer: closed{handshake_timeout})
 *   admitted(slot) (the connect line passed admission) ─► not pending, deadline cleared
 *   refused(slot) (admission refused it)                ─► closed{refused}
 *   deadline (TLS done, no admitted connect line in time) ─► expire(slot): closed{connect_timeout}
 * A refused Initial costs no TLS work and no state: the addon drops it before it makes a connection.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { GUARD_CLOSE_REASONS, type ConnectionGuardStats, type GuardCloseReason } from './connection-guard.js';
import { sourceKey } from './source-key.js';

export interface QuicGuardOptions {
  readonly handshakeTimeoutMs: number;
  readonly maxPending: number;
  readonly maxPendingPerSource: number;
  readonly sourceBlocked?: (address: string) => boolean;
  /** Close the connection in `slot`: it had no admitted session within the deadline. */
  readonly expire: (slot: number) => void;
  readonly logger: Logger;
  readonly clock?: Clock;
}

interface Pending {
  readonly source: string;
  readonly timer: TimerHandle;
  tls: boolean;
}

export class QuicGuard {
  private readonly pending = new Map<number, Pending>();
  private readonly bySource = new Map<string, number>();
  private readonly closedCounts = Object.fromEntries(GUARD_CLOSE_REASONS.map((r) => [r, 0])) as Record<GuardCloseReason, number>;
  private readonly clock: Clock;
  private limitLogged = false;

  constructor(private readonly options: QuicGuardOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** A new connection from `address` would take `slot`: false refuses it. */
  admit(address: string, slot: number): boolean {
    const source = sourceKey(address);
    const refusal: GuardCloseReason | null = this.options.sourceBlocked?.(address)
      ? 'source_blocked'
      : this.pending.size >= this.options.maxPending
        ? 'limit_total'
        : (this.bySource.get(source) ?? 0) >= this.options.maxPendingPerSource
          ? 'limit_source'
          : null;
    if (refusal !== null) {
      this.closedCounts[refusal]++;
      if (refusal === 'limit_total' && !this.limitLogged) {
        this.limitLogged = true;
        this.options.logger.warn({ pending: this.pending.size, limit: this.options.maxPending }, 'too many QUIC connections without a session; new ones are refused');
      }
      return false;
    }
    const timer = this.clock.setTimeout(() => this.onDeadline(slot), this.options.handshakeTimeoutMs);
    this.pending.set(slot, { source, timer, tls: false });
    this.bySource.set(source, (this.bySource.get(source) ?? 0) + 1);
    return true;
  }

  isPending(slot: number): boolean {
    return this.pending.has(slot);
  }

  /** The TLS handshake of a pending connection completed. */
  handshake(slot: number): void {
    const entry = this.pending.get(slot);
    if (entry !== undefined) entry.tls = true;
  }

  /** Its connect line passed admission: it carries a session now. */
  admitted(slot: number): void {
    this.forget(slot);
  }

  /** Admission refused it (the caller closes it with the refusal). */
  refused(slot: number): void {
    if (this.forget(slot)) this.closedCounts.refused++;
  }

  /** The addon ended a pending connection (a timed-out handshake, the peer's close, an error). */
  gone(slot: number, handshakeTimedOut: boolean): void {
    if (this.forget(slot) && handshakeTimedOut) this.closedCounts.handshake_timeout++;
  }

  stats(sessions: number): ConnectionGuardStats {
    return { pending: this.pending.size, open: this.pending.size + sessions, closed: { ...this.closedCounts } };
  }

  /** Stop: every deadline cancelled (the endpoint's close drops the connections). */
  close(): void {
    for (const entry of this.pending.values()) entry.timer.cancel();
    this.pending.clear();
    this.bySource.clear();
  }

  private onDeadline(slot: number): void {
    const entry = this.pending.get(slot);
    if (entry === undefined) return;
    this.forget(slot);
    this.closedCounts[entry.tls ? 'connect_timeout' : 'handshake_timeout']++;
    this.options.expire(slot);
  }

  private forget(slot: number): boolean {
    const entry = this.pending.get(slot);
    if (entry === undefined) return false;
    entry.timer.cancel();
    this.pending.delete(slot);
    const left = (this.bySource.get(entry.source) ?? 1) - 1;
    if (left > 0) this.bySource.set(entry.source, left);
    else this.bySource.delete(entry.source);
    if (this.pending.size < this.options.maxPending / 2) this.limitLogged = false;
    return true;
  }
}
