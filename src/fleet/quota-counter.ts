/**
 * Data quotas counted across the fleet: one Redis counter per user and period (quota:<user>:<period key>),
 * added to by every gateway's quota tick and read back as the fleet-wide total.
 *
 *   add() buffers this gateway's bytes ─► flush(): one batch at a time, by the FLUSH script: a marker key
 *   (qflush:<gateway>:<instance>:<seq>, SET NX) makes a batch count once however often it is retried, so a
 *   reply lost in an outage does not count it twice ─► INCRBY each key ─► the totals come back
 *   a batch that failed stays as it is and is retried; bytes counted meanwhile wait in the buffer
 *   used() = the last total read + this gateway's bytes not yet in it (never less than what is known)
 *
 * A counter missing in Redis (first use of the period, or Redis restarted empty) is seeded with this gateway's
 * own figure (the stored usage it loaded + its counted bytes), SET NX, so the first gateway to flush seeds it.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { SharedQuotaUsage, SharedQuotaWatch } from '../gateway/quota.js';
import type { FleetRedis } from './redis.js';

/** Long enough for any period (a month) plus a margin; a counter nobody adds to expires. */
const COUNTER_TTL_MS = 40 * 86_400_000;
/** How long a batch's marker lives: longer than any retry of that batch. */
const MARKER_TTL_MS = 86_400_000;

// KEYS[1] the batch marker, KEYS[2..] counters. ARGV[1] marker ttl, ARGV[2] counter ttl, then per counter
// (delta, seed or ""). Returns each counter's value after the batch.
const FLUSH = `
local applied = redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1])
local out = {}
for i = 2, #KEYS do
  local delta, seed = tonumber(ARGV[2 * i - 1]), ARGV[2 * i]
  if applied then
    if seed ~= '' then redis.call('SET', KEYS[i], seed, 'NX') end
    if delta > 0 then redis.call('INCRBY', KEYS[i], delta) end
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
  out[#out + 1] = redis.call('GET', KEYS[i]) or '0'
end
return out
`;

interface Batch {
  readonly marker: string;
  readonly keys: readonly string[];
  readonly deltas: readonly number[];
  readonly seeds: readonly string[];
}

export interface FleetQuotaCounterOptions {
  readonly redis: FleetRedis;
  readonly gatewayId: string;
  readonly logger: Logger;
}

export class FleetQuotaCounter implements SharedQuotaUsage {
  private readonly opts: FleetQuotaCounterOptions;
  private readonly instance = randomUUID();
  private seq = 0;
  /** Bytes counted here and not yet in a batch, by counter key. */
  private readonly buffer = new Map<string, number>();
  /** The batch being sent (or to retry), with its bytes. */
  private batch: Batch | null = null;
  private inFlight = false;
  /** Fleet-wide totals as last read. */
  private readonly totals = new Map<string, number>();
  private failing = false;
  private flushes = 0;

  constructor(options: FleetQuotaCounterOptions) {
    this.opts = options;
  }

  add(user: string, periodKey: string, bytes: number): void {
    if (bytes <= 0) return;
    const key = this.counterKey(user, periodKey);
    this.buffer.set(key, (this.buffer.get(key) ?? 0) + bytes);
  }

  used(user: string, periodKey: string): number | null {
    const key = this.counterKey(user, periodKey);
    const total = this.totals.get(key);
    if (total === undefined) return null;
    return total + this.unflushed(key);
  }

  flush(watch: readonly SharedQuotaWatch[]): void {
    if (this.inFlight) return;
    if (this.batch === null) {
      const keys = new Set(this.buffer.keys());
      const seedOf = new Map<string, number>();
      for (const w of watch) {
        const key = this.counterKey(w.user, w.periodKey);
        keys.add(key);
        seedOf.set(key, w.localUsed);
      }
      if (keys.size === 0) return;
      const list = [...keys];
      const deltas = list.map((k) => this.buffer.get(k) ?? 0);
      this.buffer.clear();
      // The seed is what this gateway knew before the batch's own bytes, which the batch then adds.
      const seeds = list.map((k, i) => {
        const local = seedOf.get(k);
        return local === undefined ? '' : String(Math.max(0, Math.round(local - deltas[i]! - this.unflushed(k))));
      });
      this.batch = { marker: this.opts.redis.key('qflush', this.opts.gatewayId, this.instance, String(++this.seq)), keys: list, deltas, seeds };
    }
    void this.send(this.batch);
  }

  /** Whether the last flush failed (the fleet's usage is then as last read plus our own bytes). */
  get degraded(): boolean {
    return this.failing;
  }

  get flushCount(): number {
    return this.flushes;
  }

  private async send(batch: Batch): Promise<void> {
    const { redis, logger } = this.opts;
    this.inFlight = true;
    try {
      const args: string[] = [String(MARKER_TTL_MS), String(COUNTER_TTL_MS)];
      for (const [i] of batch.keys.entries()) args.push(String(batch.deltas[i]), batch.seeds[i]!);
      const values = (await redis.commands.eval(FLUSH, batch.keys.length + 1, batch.marker, ...batch.keys, ...args)) as string[];
      this.batch = null;
      for (const [i, key] of batch.keys.entries()) this.totals.set(key, Number(values[i] ?? 0));
      this.flushes++;
      if (this.failing) logger.info({ batch: batch.marker }, 'fleet: quota usage flushed again; counting fleet-wide');
      this.failing = false;
    } catch (err) {
      redis.markFailed(err);
      if (!this.failing) logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'fleet: quota usage cannot be flushed; buffering until Redis answers');
      this.failing = true;
    } finally {
      this.inFlight = false;
    }
  }

  /** This gateway's bytes for the key not yet in the totals read. */
  private unflushed(key: string): number {
    let n = this.buffer.get(key) ?? 0;
    const batch = this.batch;
    if (batch !== null) {
      const i = batch.keys.indexOf(key);
      if (i >= 0) n += batch.deltas[i]!;
    }
    return n;
  }

  private counterKey(user: string, periodKey: string): string {
    return this.opts.redis.key('quota', user, periodKey);
  }
}
