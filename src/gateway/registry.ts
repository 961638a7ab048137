/**
 * Per-user registry: user → live connection ids and ONE shared token bucket.
 *
 * Used at connect, disconnect and reload only, never on the per-packet path: every session holds a direct
 * reference to its user's bucket (Session.bucket), so forwarding does no lookups.
 *
 *   add(user, id, limit)   first connection creates the bucket (null when unlimited); later ones get the same object
 *   remove(id)             last connection of the user drops the bucket
 *   setUserLimit(...)      changes the live bucket in place (setRate), or creates/drops it when limited↔unlimited
 *   setRateCap(user, rate) a cap on top of the configured limit (a spent quota's throttle rate), kept while the
 *                          user is offline too
 *   setShaping(mode)       config `shaping` (fair | fifo) on every live bucket and those made later
 *   setFleetGrant(user, r) in a fleet (fleet.ts): this gateway's share of the user's fleet-wide limit, from the
 *                          lease rounds (src/fleet/rate-leases.ts); clearFleetGrants() when Redis is unreachable
 *
 * The registry is the one owner of a user's effective rate: effective = configured limit capped by the rate
 * cap (effectiveRate below). Reload supplies the configured limit, the quota enforcer the cap; neither sets
 * the bucket itself, so a reload cannot lift a quota throttle and a quota tick cannot undo a reload.
 * In a fleet the bucket runs at this gateway's part of it (localRate below): the granted share while the
 * lease rounds succeed, else `fallback_share` of the effective limit; the lease client only supplies grants.
 */
import { systemClock, type Clock } from '../clock.js';
import type { Bandwidth, UserConfig } from '../config/types.js';
import { defaultBurst, TokenBucket } from './bucket.js';

export interface UserLimit {
  /** Bytes per second, null for unlimited. */
  readonly bandwidth: Bandwidth;
  /** Bucket depth in bytes, null for defaultBurst(bandwidth). */
  readonly burst: number | null;
}

/** A user's limit: their own bandwidth, else the server default; their own burst. */
/** The loader already merged the server default into `bandwidth` (null = unlimited), so this is the user's own. */
export function effectiveLimit(user: Pick<UserConfig, 'bandwidth' | 'burst'>): UserLimit {
  return { bandwidth: user.bandwidth, burst: user.burst };
}

/**
 * The limit a user's bucket runs at: the configured one, or the cap where it is lower. A capped rate uses the
 * default depth for that rate (null burst), not the larger configured one.
 */
export function effectiveRate(configured: UserLimit, cap: number | null): UserLimit {
  if (cap === null) return configured;
  if (configured.bandwidth !== null && configured.bandwidth <= cap) return configured;
  return { bandwidth: cap, burst: null };
}

/**
 * The part of `effective` this gateway enforces in a fleet: the granted share (bytes/s, -1: none, e.g. Redis
 * unreachable or not yet leased) or else `fallbackShare` of it. A configured burst shrinks with the share, so
 * the gateways' bursts together stay the user's one burst; null keeps the default depth of the local rate.
 */
export function localRate(effective: UserLimit, grant: number, fallbackShare: number): UserLimit {
  if (effective.bandwidth === null) return effective;
  const rate = grant >= 0 ? grant : effective.bandwidth * fallbackShare;
  // A bucket needs a positive rate; 1 B/s is "nothing" at any packet size while the share is zero.
  const bandwidth = Math.max(1, rate);
  const burst = effective.burst === null ? null : Math.max(1, Math.round(effective.burst * Math.min(1, bandwidth / effective.bandwidth)));
  return { bandwidth, burst };
}

interface UserEntry {
  readonly connections: Set<string>;
  /** The limit from the config (reload updates it); the bucket runs at effectiveRate(configured, cap). */
  configured: UserLimit;
  /** Fleet only: this gateway's granted share in bytes/s, -1 for none (localRate uses the fallback share). */
  grant: number;
  bucket: TokenBucket | null;
}

/** A connected, limited user as the fleet's lease round sees it. */
export interface LeaseView {
  readonly user: string;
  /** The effective limit (configured ∧ cap) in bytes/s: what this gateway reports as the user's limit. */
  readonly limit: number;
  readonly bucket: TokenBucket;
}

export interface Removal {
  readonly user: string;
  /** True when this was the user's last connection (their bucket is dropped). */
  readonly lastOfUser: boolean;
}

export class UserRegistry {
  private readonly users = new Map<string, UserEntry>();
  private readonly userOf = new Map<string, string>();
  /** Rate caps by user (bytes/s), connected or not. */
  private readonly caps = new Map<string, number>();

  private readonly clock: Clock;
  private fair: boolean;
  /** Config fleet.fallback_share; null: no fleet, buckets run at the effective rate. */
  private readonly fallbackShare: number | null;

  constructor(options: { readonly clock?: Clock; readonly shaping?: 'fair' | 'fifo'; readonly fleetFallbackShare?: number | null } = {}) {
    this.clock = options.clock ?? systemClock;
    this.fair = (options.shaping ?? 'fair') === 'fair';
    this.fallbackShare = options.fleetFallbackShare ?? null;
  }

  /** Whether buckets run at a fleet share (config `fleet`). */
  get inFleet(): boolean {
    return this.fallbackShare !== null;
  }

  /** Config `shaping` for every live bucket and those made later (reload: applies from the next packet). */
  setShaping(shaping: 'fair' | 'fifo'): void {
    this.fair = shaping === 'fair';
    for (const entry of this.users.values()) if (entry.bucket !== null) entry.bucket.fair = this.fair;
  }

  /**
   * Register a connection; returns the user's shared bucket (the same object for all their connections), or
   * null when the user is unlimited. `limit` is the configured limit, used only when this is the user's first
   * connection (the bucket runs at that limit capped by the user's rate cap). Adding an
   * id that is already registered returns the current bucket and changes nothing.
   */
  add(user: string, connectionId: string, limit: UserLimit): TokenBucket | null {
    const owner = this.userOf.get(connectionId);
    if (owner !== undefined) return this.users.get(owner)?.bucket ?? null;
    let entry = this.users.get(user);
    if (entry === undefined) {
      entry = { connections: new Set(), configured: limit, grant: -1, bucket: null };
      entry.bucket = this.newBucket(this.bucketRate(user, entry));
      this.users.set(user, entry);
    }
    entry.connections.add(connectionId);
    this.userOf.set(connectionId, user);
    return entry.bucket;
  }

  /** Unregister a connection; null (and nothing changes) when the id is unknown. */
  remove(connectionId: string): Removal | null {
    const user = this.userOf.get(connectionId);
    if (user === undefined) return null;
    this.userOf.delete(connectionId);
    const entry = this.users.get(user);
    if (entry === undefined) return { user, lastOfUser: true };
    entry.connections.delete(connectionId);
    if (entry.connections.size > 0) return { user, lastOfUser: false };
    this.users.delete(user);
    return { user, lastOfUser: true };
  }

  /** Unregister all connections of a user; returns their ids (empty for an unknown user). */
  removeUser(user: string): string[] {
    const entry = this.users.get(user);
    if (entry === undefined) return [];
    const ids = [...entry.connections];
    for (const id of ids) this.userOf.delete(id);
    this.users.delete(user);
    return ids;
  }

  /**
   * Apply a changed configured limit to a connected user at once (still capped by the user's rate cap).
   * Limited → limited: the same bucket, setRate in place. Limited ↔ unlimited: a new bucket or null, which the
   * caller must put on the user's sessions. Returns the user's bucket after the change (null for unlimited or
   * for a user with no connections).
   */
  setUserLimit(user: string, bandwidth: Bandwidth, burst: number | null): TokenBucket | null {
    const entry = this.users.get(user);
    if (entry === undefined) return null;
    entry.configured = { bandwidth, burst };
    return this.applyChangedLimit(user, entry);
  }

  /**
   * Cap the user's rate (null lifts the cap), now and for their future sessions. Returns the user's bucket
   * after the change, as setUserLimit does (null for a user with no connections).
   */
  setRateCap(user: string, cap: number | null): TokenBucket | null {
    if (cap === null) this.caps.delete(user);
    else this.caps.set(user, cap);
    const entry = this.users.get(user);
    return entry === undefined ? null : this.applyChangedLimit(user, entry);
  }

  rateCapOf(user: string): number | null {
    return this.caps.get(user) ?? null;
  }

  /**
   * Fleet: this gateway's share of the user's limit (bytes/s) from a lease round, or null for none (the
   * fallback share). No-op for a user with no connections or unlimited; returns the user's bucket.
   */
  setFleetGrant(user: string, grant: number | null): TokenBucket | null {
    const entry = this.users.get(user);
    if (entry === undefined || this.fallbackShare === null) return entry?.bucket ?? null;
    const next = grant === null ? -1 : Math.max(0, grant);
    if (next === entry.grant) return entry.bucket;
    entry.grant = next;
    return this.applyEffective(user, entry);
  }

  /** Fleet: every user back to the fallback share (the lease rounds fail: Redis unreachable). */
  clearFleetGrants(): void {
    for (const [user, entry] of this.users) {
      if (entry.grant < 0) continue;
      entry.grant = -1;
      this.applyEffective(user, entry);
    }
  }

  /** Fleet: connected users with a limit, for a lease round (user, effective limit, bucket). */
  *leaseViews(): IterableIterator<LeaseView> {
    for (const [user, entry] of this.users) {
      if (entry.bucket === null) continue;
      const { bandwidth } = effectiveRate(entry.configured, this.caps.get(user) ?? null);
      if (bandwidth !== null) yield { user, limit: bandwidth, bucket: entry.bucket };
    }
  }

  /** The rate this gateway's bucket for the user runs at: the effective limit, or in a fleet its local part. */
  private bucketRate(user: string, entry: UserEntry): UserLimit {
    const effective = effectiveRate(entry.configured, this.caps.get(user) ?? null);
    if (this.fallbackShare === null) return effective;
    return localRate(effective, entry.grant, this.fallbackShare);
  }

  /** After a local change of the limit or cap: the new limit applies now, not only from the next lease round. */
  private applyChangedLimit(user: string, entry: UserEntry): TokenBucket | null {
    const { bandwidth } = effectiveRate(entry.configured, this.caps.get(user) ?? null);
    if (entry.grant >= 0 && bandwidth !== null && entry.grant > bandwidth) entry.grant = bandwidth;
    return this.applyEffective(user, entry);
  }

  private applyEffective(user: string, entry: UserEntry): TokenBucket | null {
    const { bandwidth, burst } = this.bucketRate(user, entry);
    if (bandwidth === null) entry.bucket = null;
    else if (entry.bucket === null) entry.bucket = this.newBucket({ bandwidth, burst });
    else if (entry.bucket.rate !== bandwidth || entry.bucket.burst !== (burst ?? defaultBurst(bandwidth))) entry.bucket.setRate(bandwidth, burst);
    return entry.bucket;
  }

  bucketOf(user: string): TokenBucket | null {
    return this.users.get(user)?.bucket ?? null;
  }

  /** Connection ids of a user, oldest first (insertion order). */
  connectionsOf(user: string): ReadonlySet<string> {
    return this.users.get(user)?.connections ?? EMPTY;
  }

  userOfConnection(connectionId: string): string | undefined {
    return this.userOf.get(connectionId);
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  /** Users with at least one connection. */
  get userCount(): number {
    return this.users.size;
  }

  get connectionCount(): number {
    return this.userOf.size;
  }

  userNames(): IterableIterator<string> {
    return this.users.keys();
  }

  /** Number of live buckets (users that are connected and limited). */
  get bucketCount(): number {
    let count = 0;
    for (const entry of this.users.values()) if (entry.bucket !== null) count++;
    return count;
  }

  private newBucket(limit: UserLimit): TokenBucket | null {
    if (limit.bandwidth === null) return null;
    const bucket = new TokenBucket(limit.bandwidth, limit.burst, this.clock);
    bucket.fair = this.fair;
    return bucket;
  }
}

const EMPTY: ReadonlySet<string> = new Set();
