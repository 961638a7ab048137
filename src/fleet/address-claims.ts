/**
 * The Redis side of fleet address claims: four Lua scripts, each one atomic step, and their typed results.
 * Policy (what to claim, when to fall back) lives in addresses.ts; this file only speaks to Redis.
 *
 *   {p}addr:<address>  "<gateway>|<tag>" with a lease (PX); tag = s:<session>|<user>, pending:<user> or reserve
 *   {p}sticky:<user>   {"ipv4":…,"ipv6":…}: the addresses of the user's latest session, fleet-wide
 *   {p}addr:epoch      a token made by whoever finds it missing: a change tells a gateway Redis lost its data
 *   {p}addr:settle     while present, new claims are refused, so every gateway can re-assert what it holds
 *
 * An address held by the same gateway counts as free for it: inside one gateway the local AddressPool is the
 * authority, Redis only arbitrates between gateways.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { FleetRedis } from './redis.js';

/** Shared by claim and renew: notice lost data (epoch gone after this gateway saw one) and open a settle window. */
const EPOCH = `
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[1], epoch)
  if ARGV[3] ~= '' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[5]) end
end
local settle = redis.call('PTTL', KEYS[2])
local mine = ARGV[1] .. '|'
`;

/** KEYS: epoch, settle, sticky, addr…  ARGV: gateway, lease, seenEpoch, newEpoch, settleMs, value, stickyJson */
const CLAIM = `${EPOCH}
if settle > 0 then return {'settling', epoch, settle} end
for i = 4, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur and string.sub(cur, 1, #mine) ~= mine then return {'conflict', epoch, i - 4, cur} end
end
for i = 4, #KEYS do redis.call('SET', KEYS[i], ARGV[6], 'PX', ARGV[2]) end
if ARGV[7] ~= '' then redis.call('SET', KEYS[3], ARGV[7], 'PX', ARGV[8]) end
return {'ok', epoch, 0}
`;

/** KEYS: epoch, settle, addr…  ARGV: gateway, lease, seenEpoch, newEpoch, settleMs, value per addr…  → conflicts */
const RENEW = `${EPOCH}
local out = {epoch, settle}
for i = 3, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if (not cur) or string.sub(cur, 1, #mine) == mine then
    redis.call('SET', KEYS[i], ARGV[i + 3], 'PX', ARGV[2])
  else
    table.insert(out, i - 3)
  end
end
return out
`;

/** KEYS: addr…  ARGV: gateway. Deletes the ones this gateway holds. */
const RELEASE = `
local mine = ARGV[1] .. '|'
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur and string.sub(cur, 1, #mine) == mine then redis.call('DEL', KEYS[i]) end
end
return 1
`;

/** KEYS: sticky, addr…  ARGV: gateway. → sticky JSON (or false), then the holders of addr… (false: free or mine). */
const LOOKUP = `
local mine = ARGV[1] .. '|'
local out = {redis.call('GET', KEYS[1]) or false}
for i = 2, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur and string.sub(cur, 1, #mine) ~= mine then out[i] = cur else out[i] = false end
end
return out
`;

type Reply = string | number | null | Reply[];

interface ScriptCommands {
  qgAddrClaim(...args: (string | number)[]): Promise<Reply[]>;
  qgAddrRenew(...args: (string | number)[]): Promise<Reply[]>;
  qgAddrRelease(...args: (string | number)[]): Promise<number>;
  qgAddrLookup(...args: (string | number)[]): Promise<Reply[]>;
}

export interface StickyAddresses {
  readonly ipv4: string | null;
  readonly ipv6: string | null;
}

export type ClaimResult =
  | { readonly kind: 'ok' }
  | { readonly kind: 'conflict'; readonly index: number; readonly holder: string }
  | { readonly kind: 'settling'; readonly remainingMs: number };

export interface RenewResult {
  /** Indexes (into the entries given) of addresses another gateway holds now. */
  readonly conflicts: readonly number[];
  /** > 0 while new claims are refused. */
  readonly settleMs: number;
}

export interface LookupResult {
  readonly sticky: StickyAddresses | null;
  /** Per address asked about: the other gateway's claim, or null when free or this gateway's. */
  readonly heldElsewhere: readonly (string | null)[];
}

/** Script batches stay below this many keys (one renewal of a big gateway is split into several calls). */
const RENEW_CHUNK = 1_000;

export class AddressClaims {
  private readonly redis: Redis & ScriptCommands;
  /** The epoch this gateway last saw ('' before the first answer). */
  private seenEpoch = '';

  constructor(
    private readonly fleet: FleetRedis,
    private readonly gatewayId: string,
    private readonly leaseMs: number,
    /** How long new claims wait after Redis was found to have lost its data. */
    private readonly settleMs: number,
    private readonly stickyTtlMs: number,
  ) {
    const redis = fleet.commands;
    redis.defineCommand('qgAddrClaim', { lua: CLAIM });
    redis.defineCommand('qgAddrRenew', { lua: RENEW });
    redis.defineCommand('qgAddrRelease', { lua: RELEASE });
    redis.defineCommand('qgAddrLookup', { lua: LOOKUP });
    // defineCommand adds the methods at run time; the interface above names them for the compiler.
    this.redis = redis as Redis & ScriptCommands;
  }

  key(address: string): string {
    return this.fleet.key('addr', address);
  }

  value(tag: string): string {
    return `${this.gatewayId}|${tag}`;
  }

  /** Claim all `addresses` at once for `tag`; on success also remember them as `stickyFor`'s latest. */
  async claim(addresses: readonly string[], tag: string, stickyFor: string | null, sticky: StickyAddresses | null): Promise<ClaimResult> {
    const keys = [this.fleet.key('addr', 'epoch'), this.fleet.key('addr', 'settle'), this.fleet.key('sticky', stickyFor ?? ''), ...addresses.map((a) => this.key(a))];
    const reply = await this.redis.qgAddrClaim(
      keys.length,
      ...keys,
      this.gatewayId,
      this.leaseMs,
      this.seenEpoch,
      randomUUID(),
      this.settleMs,
      this.value(tag),
      stickyFor === null || sticky === null ? '' : JSON.stringify(sticky),
      this.stickyTtlMs,
    );
    this.seenEpoch = String(reply[1]);
    if (reply[0] === 'ok') return { kind: 'ok' };
    if (reply[0] === 'settling') return { kind: 'settling', remainingMs: Number(reply[2]) };
    return { kind: 'conflict', index: Number(reply[2]), holder: String(reply[3]) };
  }

  /** Renew (or re-assert, when Redis lost them) this gateway's claims: address → tag. */
  async renew(entries: readonly (readonly [address: string, tag: string])[]): Promise<RenewResult> {
    const conflicts: number[] = [];
    let settleMs = 0;
    for (let start = 0; start === 0 || start < entries.length; start += RENEW_CHUNK) {
      const chunk = entries.slice(start, start + RENEW_CHUNK);
      const keys = [this.fleet.key('addr', 'epoch'), this.fleet.key('addr', 'settle'), ...chunk.map(([a]) => this.key(a))];
      const reply = await this.redis.qgAddrRenew(
        keys.length,
        ...keys,
        this.gatewayId,
        this.leaseMs,
        this.seenEpoch,
        randomUUID(),
        this.settleMs,
        ...chunk.map(([, tag]) => this.value(tag)),
      );
      this.seenEpoch = String(reply[0]);
      settleMs = Math.max(settleMs, Number(reply[1]));
      for (const index of reply.slice(2)) conflicts.push(start + Number(index));
    }
    return { conflicts, settleMs };
  }

  async release(addresses: readonly string[]): Promise<void> {
    if (addresses.length === 0) return;
    await this.redis.qgAddrRelease(addresses.length, ...addresses.map((a) => this.key(a)), this.gatewayId);
  }

  /** The user's sticky addresses and who else holds each of `addresses` (e.g. the user's static ones). */
  async lookup(user: string, addresses: readonly string[]): Promise<LookupResult> {
    const keys = [this.fleet.key('sticky', user), ...addresses.map((a) => this.key(a))];
    const reply = await this.redis.qgAddrLookup(keys.length, ...keys, this.gatewayId);
    return { sticky: parseSticky(reply[0] ?? null), heldElsewhere: reply.slice(1).map((r) => (typeof r === 'string' ? r : null)) };
  }
}

/** A sticky record from Redis; anything malformed counts as none (it is only a preference). */
function parseSticky(reply: Reply): StickyAddresses | null {
  if (typeof reply !== 'string') return null;
  try {
    const parsed: unknown = JSON.parse(reply);
    if (typeof parsed !== 'object' || parsed === null) return null;
    const { ipv4, ipv6 } = parsed as Record<string, unknown>;
    return { ipv4: typeof ipv4 === 'string' ? ipv4 : null, ipv6: typeof ipv6 === 'string' ? ipv6 : null };
  } catch {
    return null;
  }
}
