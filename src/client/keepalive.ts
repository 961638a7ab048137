/**
 * Keepalive and dead-path detection on the client: a keepalive every interval; the path counts as dead when
 * nothing (no ack, no packet) was heard for `missedLimit` intervals.
 */
import type { Clock, TimerHandle } from '../clock.js';
import type { TunnelConnection } from '../transport/types.js';

export class KeepaliveMonitor {
  private timer: TimerHandle | null = null;
  /** Monotonic ms of the last sign of life from the gateway; a plain store, written per received batch too. */
  lastHeard: number;
  /** Round-trip time of the last acknowledged keepalive, ms. */
  lastRttMs: number | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly connection: TunnelConnection,
    private readonly intervalMs: number,
    private readonly missedLimit: number,
    private readonly onDead: (silentForMs: number) => void,
  ) {
    this.lastHeard = clock.now();
  }

  start(): void {
    this.timer = this.clock.setInterval(() => this.tick(), this.intervalMs);
  }

  /** Called for keepalive_ack messages. */
  acknowledged(sentAt: number): void {
    const now = this.clock.now();
    this.lastHeard = now;
    this.lastRttMs = now - sentAt;
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  private tick(): void {
    const now = this.clock.now();
    const silent = now - this.lastHeard;
    if (silent >= this.intervalMs * this.missedLimit) {
      this.stop();
      this.onDead(silent);
      return;
    }
    this.connection.sendControl({ type: 'keepalive', t: now });
  }
}
