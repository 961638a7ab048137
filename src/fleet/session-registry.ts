/**
 * Session caps across the fleet: every gateway's live sessions as records in Redis, counted by one atomic
 * script at admission.
 *
 *   sess:<gw>    hash  session id ─► record (the admin API's session view + gateway), refreshed every beat
 *   pend:<gw>    hash  session id ─► wall ms until which a reservation (admitted, not yet open) counts
 *   usess:<user> zset  "<gw>|<session id>" by start time: the user's sessions fleet-wide, oldest first
 *
 *   reserve (authenticate)  ADMIT script: the user's live members (their gateway's lease exists, record or
 *     unexpired reservation present; others removed) and the fleet total (records + reservations of gateways
 *     with a lease) against the caps ─► reject | add the reservation | replace_oldest: remove the oldest open
 *     sessions in the same script and end them (here, or through their owner: the kill router)
 *   claim (open)            the reserved id becomes the session's id
 *   opened / released       HSET record + ZADD, or HDEL + ZREM (fire and forget, in order on one connection)
 *
 * While the lease is not held (Redis down, not yet registered) admissions use the local caps only (counted,
 * logged once per outage); when it is held again, resync() writes exactly the live local sessions: records of
 * sessions that ended meanwhile are deleted, live ones written again (HSET/ZADD of the same member: nothing
 * counted twice).
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { SessionView } from '../admin/backend.js';
import { sessionViewSchema } from '../admin/schemas.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { EndReason, Session } from '../gateway/session.js';
import type { CapLimits, SharedSessionCaps } from '../gateway/sessions.js';
import type { ConnectRequest } from '../transport/types.js';
import type { FleetRedis } from './redis.js';

/** A session as the fleet lists it: the admin API's view and the gateway that owns it. */
export type FleetSessionRecord = SessionView & { readonly gateway: string };

const recordSchema = sessionViewSchema.extend({ gateway: z.string() });

export interface FleetSessionRegistryOptions {
  readonly redis: FleetRedis;
  readonly gatewayId: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Whether this gateway's lease is held now (GatewayLiveness.leaseHeld): records count only then. */
  readonly leaseHeld: () => boolean;
  /** How long an admitted request may take to open its session (the transport's handshake timeout + margin). */
  readonly reservationMs: number;
  /** This gateway's live sessions (SessionManager.list). */
  readonly liveSessions: () => readonly Session[];
  /** End a session of this gateway (a replace_oldest victim). */
  readonly endLocal: (sessionId: string, reason: EndReason, message: string) => void;
  /** End a session of another gateway (through the kill router). */
  readonly endRemote: (gatewayId: string, sessionId: string, reason: EndReason, message: string) => void;
}

export interface FleetSessionStats {
  /** True while admissions use the local caps only. */
  readonly degraded: boolean;
  /** Admissions decided on local caps only because the fleet could not be asked. */
  readonly localOnlyAdmissions: number;
  /** Full re-registrations of the live sessions (after Redis returned or our lease was re-created). */
  readonly resyncs: number;
  /** Sessions of other gateways this one replaced (replace_oldest). */
  readonly replacedRemote: number;
  /** Records read from Redis that were not valid and were skipped. */
  readonly malformedRecords: number;
}

// KEYS[1] usess:<user>, KEYS[2] gws. ARGV: prefix, self, session id, now (wall ms), max per user, max total,
// policy ("reject" | "replace_oldest"), leaving session id or "", reservation valid until (wall ms).
// Returns { "ok", victim members... } | { "user_limit" } | { "server_limit" } | { "nolease" }.
const ADMIT = `
local prefix, self, sid = ARGV[1], ARGV[2], ARGV[3]
local now, maxUser, maxTotal = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local replace, leaving = ARGV[7] == 'replace_oldest', ARGV[8]
local alive = {}
local function isAlive(gw)
  local v = alive[gw]
  if v == nil then
    v = redis.call('EXISTS', prefix .. 'gw:' .. gw) == 1
    alive[gw] = v
  end
  return v
end
if not isAlive(self) then return { 'nolease' } end
local leavingMember = self .. '|' .. leaving
local live, opened = {}, {}
local leavingLive = false
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local sep = string.find(m, '|', 1, true)
  local gw, id = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
  local valid, isOpen = false, false
  if isAlive(gw) then
    if redis.call('HEXISTS', prefix .. 'sess:' .. gw, id) == 1 then
      valid, isOpen = true, true
    else
      local untilMs = tonumber(redis.call('HGET', prefix .. 'pend:' .. gw, id))
      if untilMs ~= nil and untilMs >= now then valid = true
      elseif untilMs ~= nil then redis.call('HDEL', prefix .. 'pend:' .. gw, id) end
    end
  end
  if not valid then
    redis.call('ZREM', KEYS[1], m)
  elseif leaving ~= '' and m == leavingMember then
    leavingLive = true
  else
    live[#live + 1] = m
    if isOpen then opened[#opened + 1] = m end
  end
end
local total = 0
for _, gw in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if isAlive(gw) then
    total = total + redis.call('HLEN', prefix .. 'sess:' .. gw) + redis.call('HLEN', prefix .. 'pend:' .. gw)
  end
end
if leavingLive then total = total - 1 end
local out = { 'ok' }
if #live >= maxUser then
  -- Only open sessions are replaced: a reservation still opening is newer than any of them.
  if not replace or maxUser <= 0 or #opened < #live - maxUser + 1 then return { 'user_limit' } end
  for i = 1, #live - maxUser + 1 do
    local m = opened[i]
    local sep = string.find(m, '|', 1, true)
    local gw, id = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', prefix .. 'sess:' .. gw, id)
    redis.call('HDEL', prefix .. 'pend:' .. gw, id)
    out[#out + 1] = m
  end
end
if #out == 1 and total >= maxTotal then return { 'server_limit' } end
redis.call('ZADD', KEYS[1], now, self .. '|' .. sid)
redis.call('HSET', prefix .. 'pend:' .. self, sid, ARGV[9])
return out
`;

interface Reservation {
  readonly sessionId: string;
  readonly timer: TimerHandle;
}

export class FleetSessionRegistry implements SharedSessionCaps {
  private readonly opts: FleetSessionRegistryOptions;
  private readonly newId: () => string;
  /** Admitted requests waiting for their connection, by transport, peer and user. */
  private readonly reservations = new Map<string, Reservation>();
  private describe: (session: Session) => SessionView;
  /** A write failed or an admission went local-only: write everything again at the next held lease. */
  private dirty = true;
  private resyncing: Promise<void> | null = null;
  private degradedLogged = false;
  private localOnlyAdmissions = 0;
  private resyncs = 0;
  private replacedRemote = 0;
  private malformedRecords = 0;

  constructor(options: FleetSessionRegistryOptions & { readonly newId: () => string; readonly describe: (session: Session) => SessionView }) {
    this.opts = options;
    this.newId = options.newId;
    this.describe = options.describe;
  }

  /** The admin backend supplies views with its sampled rates. */
  setDescriber(describe: (session: Session) => SessionView): void {
    this.describe = describe;
  }

  // ── SharedSessionCaps ──────────────────────────────────────────────────────────────────────────────

  async reserve(request: ConnectRequest, limits: CapLimits, leaving: string | null): Promise<'user_limit' | 'server_limit' | null> {
    if (!this.opts.leaseHeld()) return this.localOnly(request.user, 'the fleet lease is not held');
    const { redis, gatewayId, clock } = this.opts;
    const sessionId = this.newId();
    const now = clock.wallNow();
    let reply: string[];
    try {
      reply = (await redis.commands.eval(
        ADMIT,
        2,
        redis.key('usess', request.user),
        redis.key('gws'),
        redis.prefix,
        gatewayId,
        sessionId,
        String(now),
        String(limits.maxPerUser),
        String(limits.maxTotal),
        limits.atLimit,
        leaving ?? '',
        String(now + this.opts.reservationMs),
      )) as string[];
    } catch (err) {
      redis.markFailed(err);
      return this.localOnly(request.user, errorText(err));
    }
    const [verdict, ...victims] = reply;
    if (verdict === 'user_limit' || verdict === 'server_limit') return verdict;
    if (verdict !== 'ok') return this.localOnly(request.user, 'the fleet lease is not held');
    this.degradedLogged = false;
    this.keepReservation(request, sessionId);
    for (const member of victims) this.endVictim(member);
    return null;
  }

  claim(request: ConnectRequest): string | null {
    const key = reservationKey(request);
    const reservation = this.reservations.get(key);
    if (reservation === undefined) return null;
    this.reservations.delete(key);
    reservation.timer.cancel();
    return reservation.sessionId;
  }

  abandon(sessionId: string): void {
    this.write((m) => m.hdel(this.opts.redis.key('pend', this.opts.gatewayId), sessionId));
  }

  opened(session: Session): void {
    const { redis, gatewayId } = this.opts;
    const record = JSON.stringify({ ...this.describe(session), gateway: gatewayId });
    this.write((m) =>
      m
        .hset(redis.key('sess', gatewayId), session.id, record)
        .hdel(redis.key('pend', gatewayId), session.id)
        .zadd(redis.key('usess', session.user), session.startedAt, member(gatewayId, session.id)),
    );
  }

  released(session: Session): void {
    const { redis, gatewayId } = this.opts;
    this.write((m) =>
      m
        .hdel(redis.key('sess', gatewayId), session.id)
        .hdel(redis.key('pend', gatewayId), session.id)
        .zrem(redis.key('usess', session.user), member(gatewayId, session.id)),
    );
  }

  // ── lease events ───────────────────────────────────────────────────────────────────────────────────

  /** After each held beat: a full resync when something was missed, else the records' counters refreshed. */
  afterBeat(registered: boolean): Promise<void> {
    if (registered) this.dirty = true;
    return this.dirty ? this.resync() : this.refresh();
  }

  /** Write exactly the live local sessions (and drop records of ended ones). Serialized; never throws. */
  resync(): Promise<void> {
    this.resyncing ??= this.doResync().finally(() => {
      this.resyncing = null;
    });
    return this.resyncing;
  }

  // ── fleet-wide reads ───────────────────────────────────────────────────────────────────────────────

  /** Gateways with a lease now (this one included when its lease is held). Throws when Redis cannot answer. */
  async liveGateways(): Promise<string[]> {
    const { redis } = this.opts;
    const members = await redis.commands.smembers(redis.key('gws'));
    if (members.length === 0) return [];
    const exists = await redis.commands.pipeline(members.map((gw) => ['exists', redis.key('gw', gw)])).exec();
    return members.filter((_, i) => exists?.[i]?.[1] === 1).sort();
  }

  /** Records of the sessions of other live gateways (this gateway's own come from memory). Throws when Redis cannot answer. */
  async remoteRecords(gateways: readonly string[]): Promise<FleetSessionRecord[]> {
    const { redis, gatewayId } = this.opts;
    const others = gateways.filter((gw) => gw !== gatewayId);
    if (others.length === 0) return [];
    const replies = await redis.commands.pipeline(others.map((gw) => ['hvals', redis.key('sess', gw)])).exec();
    const records: FleetSessionRecord[] = [];
    for (const [i, gw] of others.entries()) {
      const [err, values] = replies?.[i] ?? [null, []];
      if (err) throw err;
      for (const text of values as string[]) {
        const record = parseRecord(text);
        if (record === null || record.gateway !== gw) this.malformedRecords++;
        else records.push(record);
      }
    }
    return records;
  }

  /** The live gateway whose records hold this session, or null. Throws when Redis cannot answer. */
  async ownerOf(sessionId: string): Promise<string | null> {
    const { redis } = this.opts;
    const gateways = await this.liveGateways();
    if (gateways.length === 0) return null;
    const found = await redis.commands.pipeline(gateways.map((gw) => ['hexists', redis.key('sess', gw), sessionId])).exec();
    return gateways.find((_, i) => found?.[i]?.[1] === 1) ?? null;
  }

  /** Live gateways other than this one that hold sessions of the user. Throws when Redis cannot answer. */
  async otherGatewaysOf(user: string): Promise<string[]> {
    const { redis, gatewayId } = this.opts;
    const members = await redis.commands.zrange(redis.key('usess', user), 0, -1);
    const gateways = new Set(members.map((m) => m.slice(0, m.indexOf('|'))));
    gateways.delete(gatewayId);
    const live = new Set(await this.liveGateways());
    return [...gateways].filter((gw) => live.has(gw)).sort();
  }

  stats(): FleetSessionStats {
    return {
      degraded: !this.opts.leaseHeld(),
      localOnlyAdmissions: this.localOnlyAdmissions,
      resyncs: this.resyncs,
      replacedRemote: this.replacedRemote,
      malformedRecords: this.malformedRecords,
    };
  }

  /** Drop the pending reservations (the gateway stops). */
  close(): void {
    for (const r of this.reservations.values()) r.timer.cancel();
    this.reservations.clear();
  }

  // ── internals ──────────────────────────────────────────────────────────────────────────────────────

  private localOnly(user: string, why: string): null {
    this.localOnlyAdmissions++;
    this.dirty = true;
    if (!this.degradedLogged) {
      this.degradedLogged = true;
      this.opts.logger.warn({ user, why }, 'fleet: session caps are local only until Redis answers (degraded)');
    }
    return null;
  }

  private keepReservation(request: ConnectRequest, sessionId: string): void {
    const key = reservationKey(request);
    const previous = this.reservations.get(key);
    if (previous !== undefined) {
      previous.timer.cancel();
      this.abandon(previous.sessionId);
    }
    const timer = this.opts.clock.setTimeout(() => {
      if (this.reservations.get(key)?.sessionId !== sessionId) return;
      this.reservations.delete(key);
      this.abandon(sessionId);
    }, this.opts.reservationMs);
    this.reservations.set(key, { sessionId, timer });
  }

  private endVictim(m: string): void {
    const sep = m.indexOf('|');
    const gw = m.slice(0, sep);
    const id = m.slice(sep + 1);
    const message = 'replaced by a newer session of the same user';
    this.opts.logger.info({ session: id, gateway: gw }, 'fleet: replacing the oldest session of the user');
    if (gw === this.opts.gatewayId) {
      this.opts.endLocal(id, 'replaced', message);
    } else {
      this.replacedRemote++;
      this.opts.endRemote(gw, id, 'replaced', message);
    }
  }

  /** Queue writes on the command connection; a failure (or no lease) leaves a resync for the next held beat. */
  private write(build: (m: ReturnType<FleetRedis['commands']['multi']>) => unknown): void {
    if (!this.opts.leaseHeld()) {
      this.dirty = true;
      return;
    }
    const multi = this.opts.redis.commands.multi();
    build(multi);
    multi.exec().then(
      (replies) => {
        if (replies === null || replies.some(([err]) => err !== null)) this.dirty = true;
      },
      (err: unknown) => {
        this.dirty = true;
        this.opts.redis.markFailed(err);
      },
    );
  }

  private async doResync(): Promise<void> {
    const { redis, gatewayId, logger } = this.opts;
    this.dirty = false;
    try {
      const old = await redis.commands.hgetall(redis.key('sess', gatewayId));
      const live = this.opts.liveSessions().filter((s) => s.state.kind === 'open');
      const liveIds = new Set(live.map((s) => s.id));
      const multi = redis.commands.multi();
      let stale = 0;
      for (const [id, text] of Object.entries(old)) {
        if (liveIds.has(id)) continue;
        stale++;
        multi.hdel(redis.key('sess', gatewayId), id);
        const record = parseRecord(text);
        if (record !== null) multi.zrem(redis.key('usess', record.user), member(gatewayId, id));
      }
      for (const s of live) {
        multi.hset(redis.key('sess', gatewayId), s.id, JSON.stringify({ ...this.describe(s), gateway: gatewayId }));
        multi.zadd(redis.key('usess', s.user), s.startedAt, member(gatewayId, s.id));
      }
      const replies = await multi.exec();
      if (replies === null || replies.some(([err]) => err !== null)) throw new Error('a resync write failed');
      this.resyncs++;
      logger.info({ sessions: live.length, staleRemoved: stale }, 'fleet: live sessions registered');
    } catch (err) {
      this.dirty = true;
      redis.markFailed(err);
      logger.warn({ err: errorText(err) }, 'fleet: session resync failed; retried at the next beat');
    }
  }

  /** The records' counters and rates, for other gateways' lists. */
  private async refresh(): Promise<void> {
    const live = this.opts.liveSessions();
    if (live.length === 0) return;
    const { redis, gatewayId } = this.opts;
    const fields: string[] = [];
    for (const s of live) if (s.state.kind === 'open') fields.push(s.id, JSON.stringify({ ...this.describe(s), gateway: gatewayId }));
    if (fields.length === 0) return;
    try {
      await redis.commands.hset(redis.key('sess', gatewayId), ...fields);
    } catch (err) {
      this.dirty = true;
      redis.markFailed(err);
    }
  }
}

function member(gatewayId: string, sessionId: string): string {
  return `${gatewayId}|${sessionId}`;
}

function reservationKey(request: ConnectRequest): string {
  return `${request.transport} ${request.peer} ${request.user}`;
}

function parseRecord(text: string): FleetSessionRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = recordSchema.safeParse(value);
  return parsed.success ? parsed.data : null;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
