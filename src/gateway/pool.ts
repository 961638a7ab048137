/**
 * Tunnel address pool: one IPv4 and/or one IPv6 address per connection, from ServerConfig.networks.
 *
 * allocate(user, hints), per configured family, first free of:
 *   the user's static addresses ─► the address the user last had ─► a client hint ─► never-used cursor
 *   ─► oldest released address (FIFO)
 * release(allocation): the offset goes back to the FIFO (unless the cursor has not reached it yet) and is
 *   remembered as the holder's last address (LRU of users, bounded).
 * assign(user, allocation): take exactly these addresses (a fleet's claimed or reserved ones, src/fleet).
 * In a fleet the cursor starts at a point derived from the gateway id (cursorStart) and wraps round.
 *
 * Addresses are offsets (numbers) from the network address; no step scans the network, so a /16 or an IPv6
 * /64 costs the same: the cursor only moves forward and the FIFO drops stale entries lazily (amortized O(1)).
 * Never handed out: the network address (offset 0; for IPv6 the subnet-router anycast), the IPv4 broadcast,
 * the gateway's own address, and another user's static addresses. IPv6 uses only the first MAX_IPV6_HOSTS
 * offsets of its prefix: plenty of tunnel clients, and offsets stay plain numbers.
 */
import { Address4, Address6 } from 'ip-address';
import { QuicgateError } from '../errors.js';
import type { ServerConfig, UserConfig } from '../config/types.js';

/** IPv6 offsets usable per prefix (2^20 = 1 048 576 hosts). */
export const MAX_IPV6_HOSTS = 2 ** 20;
/** Users whose last addresses are remembered for reconnects (least recently released are forgotten first). */
export const DEFAULT_REMEMBERED_USERS = 10_000;

export type Family = 'ipv4' | 'ipv6';

export interface Allocation {
  readonly ipv4: string | null;
  readonly ipv6: string | null;
}

export interface FamilyStats {
  /** Assignable addresses: the range without network, broadcast and gateway (static ones included). */
  readonly size: number;
  readonly inUse: number;
  /** Static addresses reserved for particular users. */
  readonly reserved: number;
  /** Addresses any user could still get (static ones not counted). */
  readonly free: number;
}

export interface PoolStats {
  readonly ipv4: FamilyStats | null;
  readonly ipv6: FamilyStats | null;
}

export type StaticUser = Pick<UserConfig, 'name' | 'staticAddresses'>;

export interface AddressPoolOptions {
  /** Bound of the last-address memory, in users. */
  readonly rememberUsers?: number;
  /**
   * Where in each range the never-used cursor starts, as a fraction in [0, 1) (it wraps round to the start):
   * gateways of a fleet start apart, so their first picks rarely collide (src/fleet/addresses.ts).
   */
  readonly cursorStart?: number;
}

interface LastAddresses {
  ipv4: number | null;
  ipv6: number | null;
}

/** Which family an address string belongs to, or null when it is neither. */
export function addressFamily(address: string): Family | null {
  if (Address4.isValid(address) && !address.includes('/')) return 'ipv4';
  if (Address6.isValid(address) && !address.includes('/')) return 'ipv6';
  return null;
}

/** One family's range: offsets 1 .. end-1, gateway excluded. */
class FamilyRange {
  readonly prefix: number;
  readonly gatewayAddress: string;
  private readonly base: bigint;
  private readonly end: number;
  private readonly gatewayOffset: number;
  /** Offset → user holding it. */
  private readonly holders = new Map<number, string>();
  /** Offset → user it is reserved for. */
  private reservedBy = new Map<number, string>();
  /** User → their static offsets. */
  private staticOf = new Map<string, number[]>();
  /** Where the never-used cursor began; it runs start .. end-1, then wraps to 1 .. start-1. */
  private readonly start: number;
  /** Next never-used offset. */
  private cursor: number;
  private wrapped = false;
  /** Released offsets below the cursor, oldest first; entries taken meanwhile are skipped when popped. */
  private released: number[] = [];
  private releasedHead = 0;
  private readonly queued = new Set<number>();

  constructor(
    readonly family: Family,
    cidr: string,
    gateway: string,
    cursorStart: number,
  ) {
    const v4 = family === 'ipv4';
    let network: Address4 | Address6;
    try {
      network = v4 ? new Address4(cidr) : new Address6(cidr);
    } catch (cause) {
      throw new QuicgateError('QG_ERR_CONFIG_INVALID', `tunnel network ${cidr} is not a valid ${family} CIDR`, { cause });
    }
    const bits = v4 ? 32 : 128;
    this.prefix = network.subnetMask;
    if (this.prefix > bits - 2) {
      throw new QuicgateError('QG_ERR_CONFIG_INVALID', `tunnel network ${cidr} is too small (at most /${bits - 2})`);
    }
    this.base = network._startAddress();
    const hostBits = bits - this.prefix;
    this.end = v4 ? 2 ** hostBits - 1 : hostBits >= 20 ? MAX_IPV6_HOSTS : 2 ** hostBits;
    const gatewayAbs = this.parse(gateway);
    const lastAbs = network._endAddress();
    if (gatewayAbs === null || gatewayAbs < this.base || gatewayAbs > lastAbs) {
      throw new QuicgateError('QG_ERR_CONFIG_INVALID', `gateway ${gateway} is not inside tunnel network ${cidr}`);
    }
    const gatewayOffset = gatewayAbs - this.base;
    this.gatewayOffset = gatewayOffset < BigInt(this.end) ? Number(gatewayOffset) : -1;
    if (this.gatewayOffset === 0 || (v4 && gatewayAbs === lastAbs)) {
      throw new QuicgateError('QG_ERR_CONFIG_INVALID', `gateway ${gateway} is the network or broadcast address of ${cidr}`);
    }
    this.gatewayAddress = this.format(gatewayAbs - this.base);
    this.start = Math.min(this.end - 1, 1 + Math.floor(Math.min(Math.max(cursorStart, 0), 0.999_999) * (this.end - 1)));
    this.cursor = this.start;
  }

  /** Usable offset of an address string, or null when it is outside the usable range or is the gateway. */
  offsetOf(address: string): number | null {
    const abs = this.parse(address);
    if (abs === null || abs <= this.base || abs - this.base >= BigInt(this.end)) return null;
    const offset = Number(abs - this.base);
    return offset === this.gatewayOffset ? null : offset;
  }

  addressOf(offset: number): string {
    return this.format(BigInt(offset));
  }

  isHeld(offset: number): boolean {
    return this.holders.has(offset);
  }

  /** Free, and not reserved for someone other than `user`. */
  isFreeFor(offset: number, user: string): boolean {
    return !this.holders.has(offset) && (this.reservedBy.get(offset) ?? user) === user;
  }

  take(offset: number, user: string): void {
    this.holders.set(offset, user);
  }

  freeStaticOf(user: string): number | null {
    const offsets = this.staticOf.get(user);
    if (offsets === undefined) return null;
    for (const offset of offsets) if (!this.holders.has(offset)) return offset;
    return null;
  }

  /**
   * A free offset drawn at random (up to `tries` draws), or null: a fleet gateway whose sequential pick lost a
   * race in Redis retries away from the region the other gateway is walking through.
   */
  takeRandom(user: string, random: () => number, avoid: (offset: number) => boolean, tries = 16): number | null {
    for (let i = 0; i < tries; i++) {
      const offset = 1 + Math.floor(random() * (this.end - 1));
      if (offset >= this.end || offset === this.gatewayOffset || this.holders.has(offset) || this.reservedBy.has(offset) || avoid(offset)) continue;
      this.holders.set(offset, user);
      return offset;
    }
    return null;
  }

  /** Next never-used offset, else the oldest released one; null when none is left. */
  takeNext(user: string): number | null {
    for (;;) {
      if (!this.wrapped && this.cursor >= this.end) {
        this.wrapped = true;
        this.cursor = 1;
      }
      if (this.wrapped && this.cursor >= this.start) break;
      const offset = this.cursor++;
      if (offset === this.gatewayOffset || this.holders.has(offset) || this.reservedBy.has(offset)) continue;
      this.holders.set(offset, user);
      return offset;
    }
    while (this.releasedHead < this.released.length) {
      const offset = this.released[this.releasedHead++]!;
      this.queued.delete(offset);
      if (this.releasedHead > 1024 && this.releasedHead * 2 > this.released.length) {
        this.released = this.released.slice(this.releasedHead);
        this.releasedHead = 0;
      }
      if (this.holders.has(offset) || this.reservedBy.has(offset)) continue;
      this.holders.set(offset, user);
      return offset;
    }
    return null;
  }

  /** Returns the user who held it, or null when it was not held. */
  release(offset: number): string | null {
    const user = this.holders.get(offset);
    if (user === undefined) return null;
    this.holders.delete(offset);
    this.requeue(offset);
    return user;
  }

  /** Checks a whole reservation map first, so that a refused reload changes nothing. */
  validateStatic(users: readonly StaticUser[]): Map<number, string> {
    const reserved = new Map<number, string>();
    for (const user of users) {
      for (const address of user.staticAddresses) {
        if (addressFamily(address) !== this.family) continue;
        const offset = this.offsetOf(address);
        if (offset === null) {
          throw new QuicgateError(
            'QG_ERR_ADDRESS_UNAVAILABLE',
            `static address ${address} of user ${user.name} is outside the usable ${this.family} range, or is the gateway`,
            { details: { user: user.name, address } },
          );
        }
        const other = reserved.get(offset);
        if (other !== undefined && other !== user.name) {
          throw new QuicgateError('QG_ERR_ADDRESS_UNAVAILABLE', `static address ${address} is given to both ${other} and ${user.name}`, {
            details: { user: user.name, address, other },
          });
        }
        reserved.set(offset, user.name);
      }
    }
    return reserved;
  }

  applyStatic(reserved: Map<number, string>): void {
    const before = this.reservedBy;
    this.reservedBy = reserved;
    this.staticOf = new Map();
    for (const [offset, user] of reserved) {
      const list = this.staticOf.get(user);
      if (list === undefined) this.staticOf.set(user, [offset]);
      else list.push(offset);
    }
    // Addresses no longer reserved become generic; the cursor already passed those below it.
    for (const offset of before.keys()) if (!reserved.has(offset) && !this.holders.has(offset)) this.requeue(offset);
  }

  stats(): FamilyStats {
    const size = this.end - 1 - (this.gatewayOffset > 0 ? 1 : 0);
    let reservedIdle = 0;
    for (const offset of this.reservedBy.keys()) if (!this.holders.has(offset)) reservedIdle++;
    const inUse = this.holders.size;
    return { size, inUse, reserved: this.reservedBy.size, free: size - inUse - reservedIdle };
  }

  /** Whether the never-used cursor has passed `offset` (so only the FIFO can hand it out again). */
  private passed(offset: number): boolean {
    return this.wrapped ? offset < this.cursor || offset >= this.start : offset >= this.start && offset < this.cursor;
  }

  private requeue(offset: number): void {
    if (this.passed(offset) && !this.reservedBy.has(offset) && !this.queued.has(offset)) {
      this.queued.add(offset);
      this.released.push(offset);
    }
  }

  private parse(address: string): bigint | null {
    try {
      return this.family === 'ipv4' ? new Address4(address).bigInt() : new Address6(address).bigInt();
    } catch {
      return null;
    }
  }

  private format(offset: bigint): string {
    const abs = this.base + offset;
    return this.family === 'ipv4' ? Address4.fromBigInt(abs).correctForm() : Address6.fromBigInt(abs).correctForm();
  }
}

export class AddressPool {
  private readonly ranges: { ipv4: FamilyRange | null; ipv6: FamilyRange | null };
  private readonly rememberUsers: number;
  /** User → the addresses they released last; Map order is the LRU order (oldest first). */
  private readonly lastOf = new Map<string, LastAddresses>();
  /** Per family, offset → the user who released it last (so a hint cannot take someone else's address). */
  private readonly lastOwner = { ipv4: new Map<number, string>(), ipv6: new Map<number, string>() };

  /** Built from config.networks, with config.users' static addresses reserved. */
  constructor(config: { readonly networks: ServerConfig['networks']; readonly users: readonly StaticUser[] }, options: AddressPoolOptions = {}) {
    const { networks, users } = config;
    const start = options.cursorStart ?? 0;
    this.ranges = {
      ipv4: networks.ipv4 === null ? null : new FamilyRange('ipv4', networks.ipv4.cidr, networks.ipv4.gateway, start),
      ipv6: networks.ipv6 === null ? null : new FamilyRange('ipv6', networks.ipv6.cidr, networks.ipv6.gateway, start),
    };
    if (this.ranges.ipv4 === null && this.ranges.ipv6 === null) {
      throw new QuicgateError('QG_ERR_CONFIG_INVALID', 'no tunnel network configured (need ipv4 and/or ipv6)');
    }
    this.rememberUsers = Math.max(0, options.rememberUsers ?? DEFAULT_REMEMBERED_USERS);
    this.updateStatic(users);
  }

  /** Prefix length and gateway address of a configured family (for the client's assignment). */
  network(family: Family): { readonly prefix: number; readonly gateway: string } | null {
    const range = this.ranges[family];
    return range === null ? null : { prefix: range.prefix, gateway: range.gatewayAddress };
  }

  /**
   * One address per configured family for a new connection of `user`. `previous` are the client's hints
   * (addresses it held before); honoured when free, not another user's static address and not the address
   * another user released last. Throws QG_ERR_POOL_EXHAUSTED (taking nothing) when a family has none left.
   * With `scatter` (a source of numbers in [0, 1)), a free address drawn at random comes before the cursor.
   */
  allocate(user: string, previous: readonly string[] = [], scatter?: () => number): Allocation {
    const v4 = this.ranges.ipv4 === null ? null : this.pick(this.ranges.ipv4, user, previous, scatter);
    let v6: number | null = null;
    if (this.ranges.ipv6 !== null) {
      try {
        v6 = this.pick(this.ranges.ipv6, user, previous, scatter);
      } catch (err) {
        if (v4 !== null) this.ranges.ipv4?.release(v4);
        throw err;
      }
    }
    return {
      ipv4: v4 === null ? null : this.ranges.ipv4!.addressOf(v4),
      ipv6: v6 === null ? null : this.ranges.ipv6!.addressOf(v6),
    };
  }

  /**
   * Take exactly these addresses for `user` (a fleet's reserved or claimed ones): each must be in its range and
   * free for the user (not held, not another user's static). Throws QG_ERR_ADDRESS_UNAVAILABLE, taking nothing.
   */
  assign(user: string, allocation: Allocation): void {
    const picks: Array<[FamilyRange, number]> = [];
    for (const family of ['ipv4', 'ipv6'] as const) {
      const address = allocation[family];
      if (address === null) continue;
      const range = this.ranges[family];
      const offset = range === null ? null : range.offsetOf(address);
      if (range === null || offset === null || !range.isFreeFor(offset, user)) {
        throw new QuicgateError('QG_ERR_ADDRESS_UNAVAILABLE', `tunnel address ${address} is not free for ${user}`, { details: { user, address } });
      }
      picks.push([range, offset]);
    }
    for (const [range, offset] of picks) range.take(offset, user);
  }

  /** Give the addresses back; remembers them as their holder's last ones. Unknown or free addresses are ignored. */
  release(allocation: Allocation): void {
    let user: string | null = null;
    const last: LastAddresses = { ipv4: null, ipv6: null };
    for (const family of ['ipv4', 'ipv6'] as const) {
      const address = allocation[family];
      const range = this.ranges[family];
      if (address === null || range === null) continue;
      const offset = range.offsetOf(address);
      if (offset === null) continue;
      const holder = range.release(offset);
      if (holder === null) continue;
      user = holder;
      last[family] = offset;
    }
    if (user !== null) this.remember(user, last);
  }

  isAllocated(address: string): boolean {
    const family = addressFamily(address);
    const range = family === null ? null : this.ranges[family];
    if (range === null) return false;
    const offset = range.offsetOf(address);
    return offset !== null && range.isHeld(offset);
  }

  /**
   * How many more connections can get addresses (any user, static addresses not counted): the smaller of the
   * configured families' free counts, since one allocation takes one of each.
   */
  freeCount(): number {
    let free = Infinity;
    for (const range of [this.ranges.ipv4, this.ranges.ipv6]) if (range !== null) free = Math.min(free, range.stats().free);
    return free;
  }

  stats(): PoolStats {
    return { ipv4: this.ranges.ipv4?.stats() ?? null, ipv6: this.ranges.ipv6?.stats() ?? null };
  }

  /**
   * Replace the static reservations (on reload). Validates everything first: throws QG_ERR_ADDRESS_UNAVAILABLE
   * and changes nothing when an address is outside the pool, the gateway, or given to two users. Addresses in
   * use stay with their holder; a newly reserved one goes to its user once released.
   */
  updateStatic(users: readonly StaticUser[]): void {
    const plans: Array<[FamilyRange, Map<number, string>]> = [];
    for (const range of [this.ranges.ipv4, this.ranges.ipv6]) if (range !== null) plans.push([range, range.validateStatic(users)]);
    for (const user of users) {
      for (const address of user.staticAddresses) {
        const family = addressFamily(address);
        if (family === null || this.ranges[family] === null) {
          throw new QuicgateError('QG_ERR_ADDRESS_UNAVAILABLE', `static address ${address} of user ${user.name} is not in a configured tunnel network`, {
            details: { user: user.name, address },
          });
        }
      }
    }
    for (const [range, reserved] of plans) range.applyStatic(reserved);
  }

  private pick(range: FamilyRange, user: string, hints: readonly string[], scatter: (() => number) | undefined): number {
    const owners = this.lastOwner[range.family];
    let offset = range.freeStaticOf(user);
    if (offset === null) {
      const last = this.lastOf.get(user)?.[range.family] ?? null;
      if (last !== null && owners.get(last) === user && range.isFreeFor(last, user)) offset = last;
    }
    if (offset === null) {
      for (const hint of hints) {
        if (addressFamily(hint) !== range.family) continue;
        const candidate = range.offsetOf(hint);
        if (candidate !== null && range.isFreeFor(candidate, user) && (owners.get(candidate) ?? user) === user) {
          offset = candidate;
          break;
        }
      }
    }
    if (offset !== null) {
      range.take(offset, user);
      return offset;
    }
    const scattered = scatter === undefined ? null : range.takeRandom(user, scatter, (candidate) => (owners.get(candidate) ?? user) !== user);
    if (scattered !== null) return scattered;
    const next = range.takeNext(user);
    if (next === null) {
      throw new QuicgateError('QG_ERR_POOL_EXHAUSTED', `no free ${range.family} tunnel address left`, { details: { family: range.family } });
    }
    return next;
  }

  private remember(user: string, released: LastAddresses): void {
    if (this.rememberUsers === 0) return;
    const previous = this.lastOf.get(user);
    const next: LastAddresses = { ipv4: released.ipv4 ?? previous?.ipv4 ?? null, ipv6: released.ipv6 ?? previous?.ipv6 ?? null };
    if (previous !== undefined) {
      this.forgetOwner(user, previous);
      this.lastOf.delete(user);
    }
    this.lastOf.set(user, next);
    if (next.ipv4 !== null) this.lastOwner.ipv4.set(next.ipv4, user);
    if (next.ipv6 !== null) this.lastOwner.ipv6.set(next.ipv6, user);
    if (this.lastOf.size > this.rememberUsers) {
      const [oldest, addresses] = this.lastOf.entries().next().value as [string, LastAddresses];
      this.lastOf.delete(oldest);
      this.forgetOwner(oldest, addresses);
    }
  }

  private forgetOwner(user: string, addresses: LastAddresses): void {
    for (const family of ['ipv4', 'ipv6'] as const) {
      const offset = addresses[family];
      if (offset !== null && this.lastOwner[family].get(offset) === user) this.lastOwner[family].delete(offset);
    }
  }
}
