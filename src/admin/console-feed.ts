/**
 * The console's live updates, as server-sent events: ONE overview snapshot per interval, serialised once and
 * written to every open page, so a page costs the gateway one socket write per interval whatever the number
 * of sessions. The timer runs only while a page is open. A page whose socket is not draining is skipped
 * until it drains (it gets the next snapshot, never a backlog).
 */
import type { ServerResponse } from 'node:http';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { AdminBackend } from './backend.js';

export const DEFAULT_FEED_INTERVAL_MS = 1000;
/** More open pages than this is a leak or an attack, not operators. */
export const MAX_FEED_SUBSCRIBERS = 64;
/** How long the browser waits before reconnecting after the stream breaks (gateway restart). */
const RETRY_MS = 1500;

export interface ConsoleFeedOptions {
  readonly backend: AdminBackend;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly intervalMs?: number;
  readonly maxSubscribers?: number;
}

interface Subscriber {
  readonly res: ServerResponse;
  blocked: boolean;
}

export class ConsoleFeed {
  private readonly subscribers = new Set<Subscriber>();
  private readonly intervalMs: number;
  private readonly maxSubscribers: number;
  private timer: TimerHandle | null = null;
  /** The latest frame, encoded once: every page gets the same bytes. */
  private last: Buffer | null = null;
  /** Snapshots taken since start (tests check there is one per interval, not one per page). */
  snapshots = 0;

  constructor(private readonly options: ConsoleFeedOptions) {
    this.intervalMs = options.intervalMs ?? DEFAULT_FEED_INTERVAL_MS;
    this.maxSubscribers = options.maxSubscribers ?? MAX_FEED_SUBSCRIBERS;
  }

  get size(): number {
    return this.subscribers.size;
  }

  get full(): boolean {
    return this.subscribers.size >= this.maxSubscribers;
  }

  /** Takes over the response: event-stream headers, the latest snapshot at once, then one per interval. */
  subscribe(res: ServerResponse): void {
    const sub: Subscriber = { res, blocked: false };
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      // Proxies (nginx) must pass events through as they come.
      'X-Accel-Buffering': 'no',
    });
    res.write(`retry: ${RETRY_MS}\n\n`);
    res.on('drain', () => void (sub.blocked = false));
    res.once('close', () => this.unsubscribe(sub));
    this.subscribers.add(sub);
    if (this.timer === null) {
      this.last = null;
      this.timer = this.options.clock.setInterval(() => this.tick(), this.intervalMs);
    }
    this.send(sub, this.last ?? this.snapshot());
  }

  /** Ends every stream (server close). */
  close(): void {
    for (const sub of [...this.subscribers]) sub.res.end();
    this.subscribers.clear();
    this.stop();
  }

  private unsubscribe(sub: Subscriber): void {
    this.subscribers.delete(sub);
    if (this.subscribers.size === 0) this.stop();
  }

  private stop(): void {
    this.timer?.cancel();
    this.timer = null;
    this.last = null;
  }

  private tick(): void {
    if (this.subscribers.size === 0) return;
    const frame = this.snapshot();
    for (const sub of this.subscribers) this.send(sub, frame);
  }

  private snapshot(): Buffer {
    this.snapshots++;
    let frame: string;
    try {
      frame = `event: overview\ndata: ${JSON.stringify(this.options.backend.overview())}\n\n`;
    } catch (err) {
      this.options.logger.error({ err }, 'console feed: overview failed');
      frame = `event: failure\ndata: ${JSON.stringify({ message: 'the gateway could not build its overview (see its log)' })}\n\n`;
    }
    this.last = Buffer.from(frame, 'utf8');
    return this.last;
  }

  private send(sub: Subscriber, frame: Buffer): void {
    if (sub.blocked || sub.res.destroyed) return;
    if (!sub.res.write(frame)) sub.blocked = true;
  }
}
