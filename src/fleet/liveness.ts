/**
 * Gateway liveness: this gateway's lease in Redis and the detection of gateways whose lease ran out.
 *
 *   every leaseMs/3:  heartbeat script ─► SET gw:<self> <instance> PX leaseMs, SADD gws <self>
 *                     ─► every member of gws without a lease: SREM, DEL its session records, report it lost
 *   a lost gateway    ─► 'gatewayLost'(id), on exactly one survivor (the one whose script removed it: atomic)
 *   lease was absent  ─► 'registered' (first beat, Redis restarted or our lease expired while cut off): the
 *                        caller re-registers its live sessions
 *
 * A gateway's session records count only while its lease exists (the cap script checks it), so a crashed
 * gateway's sessions stop counting within leaseMs, before anyone has reaped it. A clean stop() deletes the
 * lease and the records at once, so a gateway that shuts down is not reported lost.
 *
 * The scripts name keys built from the prefix inside Lua: this needs one Redis (or a primary with replicas),
 * not Redis Cluster.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import type { FleetRedis } from './redis.js';

export interface GatewayLivenessEvents {
  /** Our lease was (re)created: register the live sessions again. */
  registered: [];
  /** A heartbeat succeeded (the lease is held). */
  beat: [];
  /** Another gateway's lease expired; only this gateway was told. */
  gatewayLost: [id: string];
}

export interface GatewayLivenessOptions {
  readonly redis: FleetRedis;
  readonly gatewayId: string;
  readonly leaseMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
}

// KEYS[1] our lease, KEYS[2] the set of gateways. ARGV: prefix, our id, instance token, lease ms.
// Returns { 1 if our lease was held by this instance before, lost gateway ids... }.
const HEARTBEAT = `
local prefix, self, token, lease = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local before = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], token, 'PX', lease)
redis.call('SADD', KEYS[2], self)
local out = { before == token and 1 or 0 }
for _, gw in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', prefix .. 'gw:' .. gw) == 0 then
    redis.call('SREM', KEYS[2], gw)
    redis.call('DEL', prefix .. 'sess:' .. gw, prefix .. 'pend:' .. gw)
    out[#out + 1] = gw
  end
end
return out
`;

// KEYS[1] our lease, KEYS[2] gateways, KEYS[3] our records, KEYS[4] our reservations. ARGV: our id, token.
// Members of the users' session sets that point at us are dropped lazily by the cap script.
const RESIGN = `
if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DEL', KEYS[1]) end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
return 1
`;

export class GatewayLiveness extends EventEmitter<GatewayLivenessEvents> {
  private readonly opts: GatewayLivenessOptions;
  /** Tells this process's lease from a previous process's with the same gateway id. */
  private readonly token = randomUUID();
  private timer: TimerHandle | null = null;
  private inFlight = false;
  private held = false;
  private lostCount = 0;

  constructor(options: GatewayLivenessOptions) {
    super();
    this.opts = options;
  }

  /** Whether the last heartbeat renewed our lease (false before the first and after a failed one). */
  get leaseHeld(): boolean {
    return this.held;
  }

  /** Gateways this one found lost since start. */
  get gatewaysLost(): number {
    return this.lostCount;
  }

  get intervalMs(): number {
    return Math.max(100, Math.floor(this.opts.leaseMs / 3));
  }

  /** Beat now and then every leaseMs/3: two beats may fail before the lease runs out. */
  start(): void {
    if (this.timer !== null) return;
    this.timer = this.opts.clock.setInterval(() => void this.beat(), this.intervalMs);
    void this.beat();
    this.opts.redis.on('state', this.onState);
  }

  /** One heartbeat (the timer calls this; tests may too). Never throws; a failure marks the lease not held. */
  async beat(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    const { redis, gatewayId, leaseMs } = this.opts;
    try {
      const reply = (await redis.commands.eval(HEARTBEAT, 2, redis.key('gw', gatewayId), redis.key('gws'), redis.prefix, gatewayId, this.token, String(leaseMs))) as [number, ...string[]];
      const [heldBefore, ...lost] = reply;
      const wasHeld = this.held;
      this.held = true;
      if (heldBefore !== 1 || !wasHeld) {
        this.opts.logger.info({ gateway: gatewayId, leaseMs }, heldBefore === 1 ? 'fleet: lease held again' : 'fleet: lease registered');
        this.emit('registered');
      }
      this.emit('beat');
      for (const id of lost) {
        this.lostCount++;
        this.opts.logger.warn({ gateway: id, leaseMs }, "fleet: a gateway's lease expired; its sessions no longer count and are closed as crash");
        this.emit('gatewayLost', id);
      }
    } catch (err) {
      redis.markFailed(err);
      if (this.held) this.opts.logger.warn({ err: errorText(err) }, 'fleet: lease renewal failed; local session caps only until Redis answers');
      this.held = false;
    } finally {
      this.inFlight = false;
    }
  }

  /** Stop beating and give the lease up (a clean stop is not a crash). */
  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = null;
    this.opts.redis.off('state', this.onState);
    if (!this.held) return;
    this.held = false;
    const { redis, gatewayId } = this.opts;
    try {
      await redis.commands.eval(RESIGN, 4, redis.key('gw', gatewayId), redis.key('gws'), redis.key('sess', gatewayId), redis.key('pend', gatewayId), gatewayId, this.token);
    } catch (err) {
      this.opts.logger.warn({ err: errorText(err) }, 'fleet: could not give up the lease; it expires on its own');
    }
  }

  /** Redis came back: beat at once instead of waiting for the timer. */
  private readonly onState = (state: string): void => {
    if (state === 'up') void this.beat();
    else this.held = false;
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
