/**
 * The fleet's one Redis connection pair: `commands` for scripts and reads, `subscriber` for pub/sub (a
 * subscribed ioredis connection can issue nothing else). Owns the up/down state every fleet part reads to
 * decide between shared state and its local fallback; it never throws into the data plane.
 *
 *   up    the command connection is ready (the last command or ping answered)
 *   down  not connected, or commands fail; ioredis reconnects with backoff and `up` follows
 *
 * Commands never queue while down (enableOfflineQueue: false): a lease round that cannot reach Redis fails at
 * once and the caller falls back, instead of piling up stale requests that would all land on reconnect.
 */
import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import type { FleetConfig } from '../config/types.js';

export type FleetLinkState = 'up' | 'down';

export interface FleetRedisEvents {
  state: [state: FleetLinkState, reason: string];
}

export interface FleetRedisOptions {
  /** Reconnect backoff ceiling (ms). */
  readonly maxRetryDelayMs?: number;
  /** Per-command timeout (ms): a Redis that hangs counts as down. */
  readonly commandTimeoutMs?: number;
}

export class FleetRedis extends EventEmitter<FleetRedisEvents> {
  readonly commands: Redis;
  readonly subscriber: Redis;
  readonly prefix: string;
  private linkState: FleetLinkState = 'down';
  private closed = false;

  constructor(config: Pick<FleetConfig, 'redisUrl' | 'keyPrefix'>, options: FleetRedisOptions = {}) {
    super();
    this.prefix = config.keyPrefix;
    const maxDelay = options.maxRetryDelayMs ?? 2_000;
    const common = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 500,
      connectTimeout: 2_000,
      retryStrategy: (attempt: number) => (this.closed ? null : Math.min(maxDelay, 50 * 2 ** Math.min(attempt, 6))),
    };
    this.commands = new Redis(config.redisUrl, common);
    // The subscriber keeps its subscriptions across reconnects (ioredis resubscribes); it may queue SUBSCRIBE.
    this.subscriber = new Redis(config.redisUrl, { ...common, enableOfflineQueue: true });
    this.commands.on('ready', () => this.setState('up', 'connected'));
    this.commands.on('close', () => this.setState('down', 'connection closed'));
    this.commands.on('end', () => this.setState('down', 'connection ended'));
    // ioredis emits 'error' for every failed reconnect; the state carries it, an unhandled 'error' would throw.
    this.commands.on('error', (err: Error) => this.markFailed(err));
    this.subscriber.on('error', () => undefined);
  }

  get state(): FleetLinkState {
    return this.linkState;
  }

  /** Key or channel name under this fleet's prefix: key('rate', 'alice') → "quicgate:rate:alice". */
  key(...parts: readonly string[]): string {
    return this.prefix + parts.join(':');
  }

  /** Connect both connections; resolves when the command connection is up, rejects when the first try fails. */
  async connect(): Promise<void> {
    await Promise.all([this.commands.connect(), this.subscriber.connect()]);
  }

  /** Start connecting without waiting: the gateway starts degraded and goes up when Redis answers. */
  connectInBackground(): void {
    this.connect().catch((err: unknown) => this.markFailed(err));
  }

  /**
   * Something failed (a command, a connect attempt, an 'error' event): the state goes down unless the command
   * connection is ready. The link is what counts: a second connect() on a live link ("already connecting") or
   * one failed command must not mark it down, since only a new 'ready' would bring it up again.
   */
  markFailed(err: unknown): void {
    if (this.commands.status !== 'ready') this.setState('down', err instanceof Error ? err.message : String(err));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.commands.disconnect(false);
    this.subscriber.disconnect(false);
    this.setState('down', 'closed');
  }

  private setState(state: FleetLinkState, reason: string): void {
    if (state === this.linkState) return;
    this.linkState = state;
    this.emit('state', state, reason);
  }
}
