/**
 * The fleet's rate-lease script: one atomic Redis call renews this gateway's leases for many users and returns
 * its share of each user's limit. Per user one hash, `<prefix>rate:<user>`:
 *
 *   limit      the user's fleet-wide limit (bytes/s)
 *   l:<gw>     the limit gateway <gw> last reported (its configured limit ∧ cap)
 *   d:<gw>     its demand: bytes/s the user offered through it (sent + queued + dropped), as a peak that
 *              decays by 15 % a round: max(this round's demand, 0.85 × the last value)
 *   g:<gw>     the share it was granted last
 *   t:<gw>     when it last renewed (Redis TIME, ms): a gateway that stops renewing for `ttl` loses its share
 *
 * Limit: a gateway whose reported limit differs from the one it reported last (a reload, an admin change, a
 * quota throttle; also while the user was away from it: l:<gw> outlives its lease) sets the fleet's limit, so a
 * change on one gateway reaches all within one lease round. A gateway new to the user adopts the fleet's
 * limit; the first gateway of a user (no hash) sets it.
 *
 * Shares: every live gateway asks for what it wants next (its desire); the limit is split max-min fairly over
 * the desires and what is left is spread evenly, so the shares add up to the limit. The caller gets its part,
 * but never more than the others leave of the limit with the shares they hold now (g:<gw>, written only by
 * each gateway's own call): shares move from one gateway to another within two rounds, never counted twice.
 *   busy (demand ≥ 0.8 × last grant)        desire = 2 × max(demand, grant)   grows until the fair share
 *   well below its grant                    desire = 1.3 × demand             headroom (1/1.3 < 0.8: it stays
 *                                                                              below, no flapping)
 * A TCP flow through a shaper offers about what it is let through (it is ack-clocked), so "busy" must not
 * ask for more than that; with 0.8 and the decaying peak, busy flows keep an even split and stable shares.
 *   new, or no traffic yet                  desire = 1.5 × demand
 * every desire at least 1 % of the limit (a gateway whose user starts sending grows from there in rounds).
 * Release (reported limit 0): the gateway's lease (d, g, t) is removed, its share goes to the others at once.
 * The whole hash expires after `keyTtl` without any renewal (the user left the fleet).
 *
 * Redis 7 runs scripts with effects replication, so TIME is allowed and every gateway sees one clock.
 */
import type { Redis, Result } from 'ioredis';

export const RATE_LEASE_LUA = `
local DECAY = 0.85
local gw = ARGV[1]
local ttl = tonumber(ARGV[2])
local keyTtl = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local reported = tonumber(ARGV[2 + 2 * i])
  local demand = tonumber(ARGV[3 + 2 * i])
  if reported <= 0 then
    redis.call('HDEL', key, 'd:' .. gw, 'g:' .. gw, 't:' .. gw)
    out[#out + 1] = 0
    out[#out + 1] = 0
  else
    local flat = redis.call('HGETALL', key)
    local h = {}
    for j = 1, #flat, 2 do h[flat[j]] = flat[j + 1] end
    local limit = tonumber(h['limit'])
    local before = tonumber(h['l:' .. gw])
    if limit == nil or (before ~= nil and before ~= reported) then
      -- A new limit: the shares the others hold scale with it (they apply it when they renew, within a round),
      -- so this gateway's part is not held back by shares of the old limit.
      if limit ~= nil and limit > 0 then
        for field, value in pairs(h) do
          if string.sub(field, 1, 2) == 'g:' then
            h[field] = tonumber(value) * reported / limit
            redis.call('HSET', key, field, h[field])
          end
        end
      end
      limit = reported
      redis.call('HSET', key, 'limit', limit)
    end
    -- Demand as a decaying peak: a TCP flow that backs off for a round (a loss, a stalled event loop) keeps
    -- its share; a gateway whose user really slowed down gives it up within about two seconds.
    local peak = math.max(demand, DECAY * (tonumber(h['d:' .. gw]) or 0))
    redis.call('HSET', key, 'l:' .. gw, reported, 'd:' .. gw, peak, 't:' .. gw, now)
    h['d:' .. gw] = peak
    h['t:' .. gw] = now
    -- Live gateways and their desires; expired ones are removed.
    local names, desires = {}, {}
    local floor = limit * 0.01
    for field, value in pairs(h) do
      if string.sub(field, 1, 2) == 't:' then
        local other = string.sub(field, 3)
        if now - tonumber(value) > ttl then
          redis.call('HDEL', key, 'd:' .. other, 'g:' .. other, 't:' .. other)
        else
          local d = tonumber(h['d:' .. other]) or 0
          local g = tonumber(h['g:' .. other])
          local want
          if g == nil or g <= 0 then want = 1.5 * d
          elseif d >= 0.8 * g then want = 2 * math.max(d, g)
          else want = 1.3 * d end
          if want < floor then want = floor end
          names[#names + 1] = other
          desires[#desires + 1] = want
        end
      end
    end
    -- Max-min fair split of the limit over the desires, smallest first; the rest spread evenly.
    local order = {}
    for j = 1, #names do order[j] = j end
    table.sort(order, function(a, b) return desires[a] < desires[b] end)
    local grants = {}
    local left = limit
    for k = 1, #order do
      local j = order[k]
      local fair = left / (#order - k + 1)
      local share = math.min(desires[j], fair)
      grants[j] = share
      left = left - share
    end
    -- The caller's share, within what the others hold now: each gateway learns its new share only when it
    -- renews, so a share taken from another is handed out once that gateway has given it up.
    local mine, others = 0, 0
    for j = 1, #names do
      if names[j] == gw then mine = grants[j] + left / #names
      else others = others + (tonumber(h['g:' .. names[j]]) or 0) end
    end
    mine = math.max(math.min(mine, limit - others), math.min(mine, floor))
    redis.call('HSET', key, 'g:' .. gw, mine)
    redis.call('PEXPIRE', key, keyTtl)
    out[#out + 1] = math.floor(mine)
    out[#out + 1] = limit
  end
end
return out
`;

/** One user's part of a lease call: the limit this gateway reports (0 releases its lease) and its demand. */
export interface LeaseRequest {
  readonly key: string;
  /** Bytes/s: this gateway's effective limit for the user; 0 = release. */
  readonly limit: number;
  /** Bytes/s offered through this gateway since its last round. */
  readonly demand: number;
}

export interface LeaseGrant {
  /** This gateway's share, bytes/s. */
  readonly grant: number;
  /** The user's fleet-wide limit, bytes/s (0 for a release). */
  readonly limit: number;
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    quicgateRateLease(numKeys: number, ...args: (string | number)[]): Result<number[], Context>;
  }
}

const COMMAND = 'quicgateRateLease';

/** Register the script on a connection (ioredis sends EVALSHA, and the script itself once when Redis lacks it). */
export function defineRateLease(redis: Redis): void {
  if (typeof (redis as Partial<Pick<Redis, typeof COMMAND>>)[COMMAND] !== 'function') redis.defineCommand(COMMAND, { lua: RATE_LEASE_LUA });
}

/** Users per script call: one call holds Redis for its duration, so a round of many users is several calls in one pipeline. */
export const USERS_PER_CALL = 500;

/**
 * One lease round for every request, in one round trip (a pipeline of calls of USERS_PER_CALL users each).
 * Grants come back in request order. Rejects when Redis cannot be reached or a call fails.
 */
export async function leaseRound(redis: Redis, gatewayId: string, ttlMs: number, keyTtlMs: number, requests: readonly LeaseRequest[]): Promise<LeaseGrant[]> {
  defineRateLease(redis);
  const pipeline = redis.pipeline();
  for (let start = 0; start < requests.length; start += USERS_PER_CALL) {
    const chunk = requests.slice(start, start + USERS_PER_CALL);
    const args: (string | number)[] = chunk.map((r) => r.key);
    args.push(gatewayId, Math.round(ttlMs), Math.round(keyTtlMs));
    for (const r of chunk) args.push(Math.round(r.limit), Math.round(r.demand));
    pipeline.quicgateRateLease(chunk.length, ...args);
  }
  const results = (await pipeline.exec()) ?? [];
  const grants: LeaseGrant[] = [];
  for (const [err, value] of results) {
    if (err !== null) throw err;
    const flat = value as number[];
    for (let i = 0; i + 1 < flat.length; i += 2) grants.push({ grant: Number(flat[i]), limit: Number(flat[i + 1]) });
  }
  if (grants.length !== requests.length) throw new Error(`lease round answered ${grants.length} grants for ${requests.length} users`);
  return grants;
}
