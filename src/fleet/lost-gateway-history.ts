/**
 * A lost gateway's open history rows, closed as `crash` by the gateway that reaped it, retried until the
 * history store takes it: when PostgreSQL is down at that moment the rows would otherwise stay open until the
 * lost gateway comes back under the same id.
 *
 * The end time is fixed when the loss is found (rows end at their last flush, never after it), and only rows
 * that started by then are closed, so a late retry never touches the sessions of a gateway restarted under the
 * same id meanwhile.
 */
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';

export interface CrashCloser {
  closeOpenSessions(gatewayId: string, reason: 'crash', endedAtMs: number, startedByMs: number | null): Promise<number>;
}

export interface LostGatewayHistoryOptions {
  readonly history: CrashCloser;
  readonly clock: Clock;
  readonly logger: Logger;
  /** First retry delay; doubles up to maxRetryMs. */
  readonly firstRetryMs?: number;
  readonly maxRetryMs?: number;
}

export class LostGatewayHistory {
  private readonly retries = new Map<string, TimerHandle>();
  private stopped = false;
  private readonly firstRetryMs: number;
  private readonly maxRetryMs: number;
  /** Closes that failed and were tried again (for tests and the logs). */
  failedAttempts = 0;

  constructor(private readonly opts: LostGatewayHistoryOptions) {
    this.firstRetryMs = opts.firstRetryMs ?? 1_000;
    this.maxRetryMs = opts.maxRetryMs ?? 60_000;
  }

  /** A gateway this one reaped: close its open rows now, or later when the store refuses. */
  lost(gatewayId: string): Promise<void> {
    this.retries.get(gatewayId)?.cancel();
    this.retries.delete(gatewayId);
    return this.attempt(gatewayId, this.opts.clock.wallNow(), this.firstRetryMs);
  }

  /** Gateways whose rows are still waiting for a retry. */
  pending(): string[] {
    return [...this.retries.keys()];
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.retries.values()) timer.cancel();
    this.retries.clear();
  }

  private async attempt(gatewayId: string, lostAtMs: number, nextDelayMs: number): Promise<void> {
    if (this.stopped) return;
    const { logger } = this.opts;
    try {
      const closed = await this.opts.history.closeOpenSessions(gatewayId, 'crash', lostAtMs, lostAtMs);
      logger.info({ gateway: gatewayId, closed }, "fleet: lost gateway's open history sessions closed as crash");
    } catch (err) {
      if (this.stopped) return;
      this.failedAttempts++;
      logger.warn(
        { gateway: gatewayId, err: err instanceof Error ? err.message : String(err), retryInMs: nextDelayMs },
        "fleet: lost gateway's open history sessions not closed yet; retrying",
      );
      this.retries.set(
        gatewayId,
        this.opts.clock.setTimeout(() => {
          this.retries.delete(gatewayId);
          void this.attempt(gatewayId, lostAtMs, Math.min(nextDelayMs * 2, this.maxRetryMs));
        }, nextDelayMs),
      );
    }
  }
}
