/**
 * Admitted CONNECT requests waiting for their WebTransport session (the library hands the session over
 * separately, with our ticket id in its userData). A ticket holds the client's credentials, so it must not
 * outlive its handshake: each expires after `ttlMs`, and at most `max` are held (the oldest goes first).
 * `expire` is told about every ticket that was dropped unused (its connection's guard slot is released).
 */
import { randomBytes } from 'node:crypto';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';

export interface TicketStoreOptions<T> {
  readonly ttlMs: number;
  readonly max: number;
  readonly clock?: Clock;
  readonly expire?: (value: T) => void;
}

interface Held<T> {
  readonly value: T;
  readonly timer: TimerHandle;
}

export class TicketStore<T> {
  // A Map iterates in insertion order: its first key is the oldest ticket.
  private readonly held = new Map<string, Held<T>>();
  private readonly clock: Clock;

  constructor(private readonly options: TicketStoreOptions<T>) {
    this.clock = options.clock ?? systemClock;
  }

  get size(): number {
    return this.held.size;
  }

  /** Stores `value` and returns its ticket id. */
  issue(value: T): string {
    while (this.held.size >= this.options.max) {
      const oldest = this.held.keys().next().value as string;
      this.drop(oldest);
    }
    const id = randomBytes(12).toString('hex');
    this.held.set(id, { value, timer: this.clock.setTimeout(() => this.drop(id), this.options.ttlMs) });
    return id;
  }

  /** The value of ticket `id`, removed; undefined when unknown or expired. */
  take(id: string): T | undefined {
    const held = this.held.get(id);
    if (held === undefined) return undefined;
    this.held.delete(id);
    held.timer.cancel();
    return held.value;
  }

  clear(): void {
    for (const id of [...this.held.keys()]) this.drop(id);
  }

  private drop(id: string): void {
    const held = this.held.get(id);
    if (held === undefined) return;
    this.held.delete(id);
    held.timer.cancel();
    this.options.expire?.(held.value);
  }
}
