/**
 * Tunnel addresses unique across a fleet: the local AddressPool stays the synchronous allocator, Redis
 * (address-claims.ts) arbitrates between gateways.
 *
 *   prepare(user, hints)   async, before the session opens (bounded by claimTimeoutMs):
 *                          lookup sticky + static holders ─► pool.allocate(user, [sticky, hints]) ─► claim
 *                          conflict ─► mark that address foreign locally, try a random free one (MAX_ATTEMPTS)
 *                          ─► a ticket; null when Redis is down, settling or slow (allocate() then falls back)
 *   allocate(user, pref)   sync, in SessionManager.open: the resumed session's own addresses (still claimed
 *                          by this gateway) ─► the staged ticket ─► a pair from this gateway's reserve
 *                          ─► QG_ERR_POOL_EXHAUSTED
 *   release(session)       sync, in SessionManager.end: pool.release + one Redis release (fire and forget)
 *   maintain()             every lease/3 and when Redis comes back: renew (re-assert) every claim; a claim
 *                          another gateway holds now ends that session (onConflict); top up the reserve;
 *                          forget old foreign marks
 *
 * Redis down: new sessions get addresses only from the reserve, pairs this gateway claimed while Redis was up
 * (fleet.address_reserve), so no two gateways can hand out the same address; sticky and static addresses
 * apply again once Redis is back. An empty reserve refuses the session (pool_exhausted, the client retries).
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import { isQuicgateError, QuicgateError } from '../errors.js';
import type { AddressPool, Allocation, StaticUser } from '../gateway/pool.js';
import type { HeldAddresses, SessionAddresses } from '../gateway/sessions.js';
import { AddressClaims, type ClaimResult } from './address-claims.js';
import { bounded } from './bounded.js';
import type { FleetRedis } from './redis.js';

/** Local holders that are not users (user names never start with NUL). */
const RESERVE = '\u0000reserve';
const FOREIGN = '\u0000foreign';
const MAX_ATTEMPTS = 8;
/** A user's sticky addresses are remembered this long after their latest session began. */
export const STICKY_TTL_MS = 30 * 86_400_000;

export interface FleetAddressOptions {
  readonly redis: FleetRedis;
  readonly pool: AddressPool;
  readonly gatewayId: string;
  /** Claim lease (fleet.session_lease): a crashed gateway's addresses are free again after it. */
  readonly leaseMs: number;
  /** Address pairs claimed ahead for use while Redis is unreachable (fleet.address_reserve). */
  readonly reserve: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Bound on the wait for Redis at connect (ms). */
  readonly claimTimeoutMs?: number;
  /** Numbers in [0, 1) for the retries after a conflict (default Math.random; tests pass a seeded one). */
  readonly random?: () => number;
}

export interface AddressTicket {
  readonly user: string;
  readonly allocation: Allocation;
}

export interface FleetAddressStats {
  readonly claims: number;
  readonly conflicts: number;
  /** Sessions that got a reserve pair because Redis was down, settling or slow. */
  readonly fallbacks: number;
  /** Sessions refused because Redis was unreachable and the reserve was empty. */
  readonly reserveEmpty: number;
  /** Sessions ended because another gateway held their address when the claims were renewed. */
  readonly renewConflicts: number;
  readonly reserveSize: number;
  readonly foreignMarks: number;
  readonly held: number;
}

type ConflictListener = (sessionId: string, address: string, holder: string) => void;

export class FleetAddressBook implements SessionAddresses {
  readonly claims: AddressClaims;
  private readonly pool: AddressPool;
  private readonly redis: FleetRedis;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly leaseMs: number;
  private readonly reserveTarget: number;
  private readonly claimTimeoutMs: number;
  private readonly random: () => number;
  /** Session id → its addresses and user, for renewal. */
  private readonly held = new Map<string, HeldAddresses>();
  private readonly reserve: Allocation[] = [];
  /** Address → monotonic time its mark ends (claimed by another gateway when last asked). */
  private readonly foreign = new Map<string, { until: number; holder: string }>();
  /** Address → when this gateway released it: its claim is still ours for a while (resume while Redis is down). */
  private readonly releasedAt = new Map<string, number>();
  private staged: AddressTicket | null = null;
  /** Releases sent and not yet answered: stop() waits for them, so a clean shutdown frees its claims at once. */
  private readonly releasing = new Set<Promise<void>>();
  private settlingUntil = -Infinity;
  private timer: TimerHandle | null = null;
  private maintaining: Promise<void> | null = null;
  private onConflict: ConflictListener = () => undefined;
  private readonly counts = { claims: 0, conflicts: 0, fallbacks: 0, reserveEmpty: 0, renewConflicts: 0 };

  constructor(options: FleetAddressOptions) {
    this.pool = options.pool;
    this.redis = options.redis;
    this.clock = options.clock;
    this.logger = options.logger;
    this.leaseMs = options.leaseMs;
    this.reserveTarget = options.reserve;
    this.claimTimeoutMs = options.claimTimeoutMs ?? 1_000;
    this.random = options.random ?? Math.random;
    // Every live gateway re-asserts within one renewal round (lease/3) of Redis coming back, plus reconnect time.
    this.claims = new AddressClaims(options.redis, options.gatewayId, options.leaseMs, Math.ceil((2 * options.leaseMs) / 3) + 2_000, STICKY_TTL_MS);
  }

  /** Renew every lease/3 and as soon as Redis is back. */
  start(onConflict: ConflictListener): void {
    this.onConflict = onConflict;
    this.timer ??= this.clock.setInterval(() => void this.maintain(), Math.max(100, Math.floor(this.leaseMs / 3)));
    this.redis.on('state', this.onState);
    if (this.redis.state === 'up') void this.maintain();
  }

  /** Resolves when every release sent so far has been answered by Redis (or failed). Never rejects. */
  async releasesAnswered(): Promise<void> {
    await Promise.all(this.releasing);
  }

  /** Stops renewing and releases the reserve (sessions release their own addresses as they end). */
  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = null;
    this.redis.off('state', this.onState);
    await this.maintaining;
    await this.releasesAnswered();
    const reserve = this.reserve.splice(0);
    for (const pair of reserve) this.pool.release(pair);
    if (this.redis.state === 'up') await this.claims.release(reserve.flatMap(addressesOf)).catch(() => undefined);
  }

  /**
   * Claim addresses for a session of `user` about to open. Returns null when the fleet cannot answer now (the
   * session then gets a reserve pair); throws QG_ERR_POOL_EXHAUSTED when the pool has none left.
   */
  async prepare(user: StaticUser, hints: readonly string[]): Promise<AddressTicket | null> {
    if (!this.sharedMode()) return null;
    try {
      // A claim that answers after the bound is given back: its session took a reserve pair meanwhile.
      return await bounded(this.clock, this.claimTimeoutMs, this.claimFor(user, hints), (late) => {
        if (late !== null) this.releaseAddresses(late.allocation);
      });
    } catch (err) {
      if (isQuicgateError(err, 'QG_ERR_POOL_EXHAUSTED')) throw err;
      this.redis.markFailed(err);
      this.logger.warn({ err: err instanceof Error ? err.message : String(err), user: user.name }, 'fleet address claim failed; using the reserve');
      return null;
    }
  }

  /** The ticket the next allocate() of its user takes (Gateway: stage, open, unstage). */
  stage(ticket: AddressTicket | null): void {
    this.staged = ticket;
  }

  /** A staged ticket that open() did not take goes back. */
  unstage(): void {
    const ticket = this.staged;
    this.staged = null;
    if (ticket !== null) this.releaseAddresses(ticket.allocation);
  }

  allocate(user: string, preferred: readonly string[], sessionId: string): Allocation {
    const allocation = this.ownAgain(user, preferred) ?? this.takeStaged(user) ?? this.fromReserve(user);
    this.held.set(sessionId, { id: sessionId, user, ...allocation });
    return allocation;
  }

  release(session: HeldAddresses): void {
    this.held.delete(session.id);
    this.releaseAddresses(session);
  }

  /** Addresses this gateway's sessions hold (for routing hooks and the admin API). */
  heldAddresses(): HeldAddresses[] {
    return [...this.held.values()];
  }

  stats(): FleetAddressStats {
    return { ...this.counts, reserveSize: this.reserve.length, foreignMarks: this.foreign.size, held: this.held.size };
  }

  /** One renewal round (also tests call it). Never throws. */
  maintain(): Promise<void> {
    this.maintaining ??= this.runMaintenance().finally(() => {
      this.maintaining = null;
    });
    return this.maintaining;
  }

  // ── internals ──────────────────────────────────────────────────────────────────────────────────────────

  private readonly onState = (state: string): void => {
    if (state === 'up') void this.maintain();
  };

  private sharedMode(): boolean {
    return this.redis.state === 'up' && this.clock.now() >= this.settlingUntil;
  }

  private async claimFor(user: StaticUser, hints: readonly string[]): Promise<AddressTicket | null> {
    const statics = user.staticAddresses;
    const looked = await this.claims.lookup(user.name, statics);
    statics.forEach((address, i) => {
      const holder = looked.heldElsewhere[i];
      if (holder != null) this.markForeign(address, user.name, holder);
      else this.unmarkForeign(address); // free again fleet-wide: an old mark must not keep the user off it
    });
    const sticky = [looked.sticky?.ipv4, looked.sticky?.ipv6].filter((a): a is string => typeof a === 'string');
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // After a lost race, draw at random: two gateways walking the same region would otherwise keep colliding.
      const allocation = this.pool.allocate(user.name, [...sticky, ...hints], attempt === 0 ? undefined : this.random);
      const addresses = addressesOf(allocation);
      let result: ClaimResult;
      try {
        result = await this.claims.claim(addresses, `pending:${user.name}`, user.name, allocation);
      } catch (err) {
        this.pool.release(allocation);
        throw err;
      }
      if (result.kind === 'ok') {
        this.counts.claims++;
        return { user: user.name, allocation };
      }
      this.pool.release(allocation);
      if (result.kind === 'settling') {
        this.settlingUntil = this.clock.now() + result.remainingMs;
        return null;
      }
      this.counts.conflicts++;
      this.markForeign(addresses[result.index]!, user.name, result.holder);
    }
    this.logger.warn({ user: user.name }, `no fleet address claim after ${MAX_ATTEMPTS} tries; using the reserve`);
    return null;
  }

  /** A resumed session's addresses, just released here and so still claimed by this gateway: taken again. */
  private ownAgain(user: string, preferred: readonly string[]): Allocation | null {
    if (preferred.length === 0) return null;
    const recent = this.clock.now() - this.leaseMs / 2;
    const allocation: { ipv4: string | null; ipv6: string | null } = { ipv4: null, ipv6: null };
    for (const address of preferred) {
      const at = this.releasedAt.get(address);
      if (at === undefined || at < recent || this.pool.isAllocated(address)) return null;
      allocation[address.includes(':') ? 'ipv6' : 'ipv4'] = address;
    }
    if (!this.coversFamilies(allocation)) return null;
    try {
      this.pool.assign(user, allocation);
    } catch {
      return null;
    }
    for (const address of preferred) this.releasedAt.delete(address);
    return allocation;
  }

  private takeStaged(user: string): Allocation | null {
    const ticket = this.staged;
    if (ticket === null || ticket.user !== user) return null;
    this.staged = null;
    return ticket.allocation;
  }

  private fromReserve(user: string): Allocation {
    const pair = this.reserve.shift();
    if (pair === undefined) {
      this.counts.reserveEmpty++;
      throw new QuicgateError('QG_ERR_POOL_EXHAUSTED', 'the fleet cannot confirm a free tunnel address now and this gateway has no reserve left', {
        details: { fleet: this.redis.state },
      });
    }
    this.pool.release(pair);
    this.pool.assign(user, pair);
    this.counts.fallbacks++;
    return pair;
  }

  private releaseAddresses(allocation: Allocation): void {
    this.pool.release(allocation);
    const addresses = addressesOf(allocation);
    const now = this.clock.now();
    for (const address of addresses) this.releasedAt.set(address, now);
    if (this.redis.state !== 'up') return; // the claims run out with their lease
    const sent = this.claims.release(addresses).catch((err: unknown) => this.redis.markFailed(err));
    this.releasing.add(sent);
    void sent.finally(() => this.releasing.delete(sent));
  }

  /** Hold an address another gateway claimed, so the local pool does not offer it for a while. */
  private markForeign(address: string, forUser: string, holder: string): void {
    if (this.foreign.has(address) || this.pool.isAllocated(address)) return;
    const single = { ipv4: address.includes(':') ? null : address, ipv6: address.includes(':') ? address : null };
    try {
      this.pool.assign(FOREIGN, single);
    } catch {
      // Another user's static address: held in that user's name, which only keeps that user off it.
      try {
        this.pool.assign(forUser, single);
      } catch {
        return;
      }
    }
    this.foreign.set(address, { until: this.clock.now() + this.leaseMs / 3, holder });
  }

  private unmarkForeign(address: string): void {
    if (!this.foreign.delete(address)) return;
    this.pool.release({ ipv4: address.includes(':') ? null : address, ipv6: address.includes(':') ? address : null });
  }

  private async runMaintenance(): Promise<void> {
    if (this.redis.state !== 'up') return;
    try {
      await this.renew();
      if (this.sharedMode()) await this.topUpReserve();
    } catch (err) {
      this.redis.markFailed(err);
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'fleet address renewal failed; claims run on their lease');
    }
    this.forgetOld();
  }

  private async renew(): Promise<void> {
    const entries: Array<readonly [string, string]> = [];
    const owners: Array<{ session: HeldAddresses } | { reserve: Allocation }> = [];
    for (const session of this.held.values()) {
      for (const address of addressesOf(session)) {
        entries.push([address, `s:${session.id}|${session.user}`]);
        owners.push({ session });
      }
    }
    for (const pair of this.reserve) {
      for (const address of addressesOf(pair)) {
        entries.push([address, 'reserve']);
        owners.push({ reserve: pair });
      }
    }
    const result = await this.claims.renew(entries);
    if (result.settleMs > 0) this.settlingUntil = this.clock.now() + result.settleMs;
    for (const index of result.conflicts) {
      const owner = owners[index]!;
      const address = entries[index]![0];
      this.counts.renewConflicts++;
      if ('session' in owner) {
        this.logger.error({ session: owner.session.id, address }, 'another gateway holds this session\'s address (Redis was out of reach longer than the lease); ending the session');
        this.onConflict(owner.session.id, address, 'another gateway');
      } else {
        const i = this.reserve.indexOf(owner.reserve);
        if (i >= 0) {
          this.reserve.splice(i, 1);
          this.pool.release(owner.reserve);
        }
      }
    }
  }

  private async topUpReserve(): Promise<void> {
    let attempts = 0;
    while (this.reserve.length < this.reserveTarget && attempts++ < this.reserveTarget + MAX_ATTEMPTS) {
      let pair: Allocation;
      try {
        pair = this.pool.allocate(RESERVE);
      } catch {
        return; // pool full: sessions come first
      }
      const addresses = addressesOf(pair);
      const result = await this.claims.claim(addresses, 'reserve', null, null).catch((err: unknown) => {
        this.pool.release(pair);
        throw err;
      });
      if (result.kind === 'ok') {
        this.reserve.push(pair);
        continue;
      }
      this.pool.release(pair);
      if (result.kind === 'settling') {
        this.settlingUntil = this.clock.now() + result.remainingMs;
        return;
      }
      this.markForeign(addresses[result.index]!, RESERVE, result.holder);
    }
  }

  private forgetOld(): void {
    const now = this.clock.now();
    for (const [address, mark] of this.foreign) if (mark.until <= now) this.unmarkForeign(address);
    for (const [address, at] of this.releasedAt) if (now - at > this.leaseMs / 2) this.releasedAt.delete(address);
  }

  private coversFamilies(allocation: Allocation): boolean {
    return (this.pool.network('ipv4') === null) === (allocation.ipv4 === null) && (this.pool.network('ipv6') === null) === (allocation.ipv6 === null);
  }

}

function addressesOf(allocation: Allocation): string[] {
  return [allocation.ipv4, allocation.ipv6].filter((a): a is string => a !== null);
}

/** Where this gateway's never-used cursor starts in each range, from its id: gateways start apart. */
export function cursorStartFor(gatewayId: string): number {
  return createHash('sha256').update(gatewayId).digest().readUInt32BE(0) / 2 ** 32;
}
