/**
 * Kills routed to the gateway that owns the session, over Redis pub/sub: one channel per gateway
 * (ctl:<gateway id>) for requests and the replies to its own requests.
 *
 *   kill(gw, id)  PUBLISH ctl:<gw> {kill, requestId, from} ─► no subscriber: QG_ERR_FLEET_UNREACHABLE at once
 *                 ─► the owner ends the session, PUBLISH ctl:<from> {reply, requestId, closed}
 *                 ─► no reply within timeoutMs: QG_ERR_FLEET_TIMEOUT (the owner may still end it)
 *
 * Messages are validated (zod) and a malformed one is dropped and counted, never acted on. Pub/sub is
 * at-most-once: a kill lost with a dropped connection is reported as a timeout, never as done.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Clock, TimerHandle } from '../clock.js';
import { QuicgateError } from '../errors.js';
import { END_REASONS, type EndReason } from '../gateway/session.js';
import type { FleetRedis } from './redis.js';

/** What the owning gateway does with a routed request. */
export interface KillHandler {
  /** End the session; false when it is not live here. */
  killSession(id: string, reason: EndReason, message: string): boolean;
  /** End all sessions of the user here; how many ended. */
  killUser(name: string, reason: EndReason, message: string): number;
}

export interface FleetKillRouterOptions {
  readonly redis: FleetRedis;
  readonly gatewayId: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly handler: KillHandler;
  /** How long to wait for the owner's reply. */
  readonly timeoutMs: number;
}

/** Tries of a reply's PUBLISH. */
const REPLY_ATTEMPTS = 3;

const reason = z.enum(END_REASONS);
const messageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('kill'), requestId: z.string(), from: z.string(), id: z.string(), reason, message: z.string() }),
  z.object({ type: z.literal('kill_user'), requestId: z.string(), from: z.string(), user: z.string(), reason, message: z.string() }),
  z.object({ type: z.literal('reply'), requestId: z.string(), closed: z.number().int().nonnegative() }),
]);
type RoutedMessage = z.infer<typeof messageSchema>;
type RoutedRequest = Exclude<RoutedMessage, { type: 'reply' }>;
type RequestBody = RoutedRequest extends infer R ? (R extends RoutedRequest ? Omit<R, 'requestId' | 'from'> : never) : never;

interface Pending {
  readonly resolve: (closed: number) => void;
  readonly timer: TimerHandle;
}

export class FleetKillRouter {
  private readonly opts: FleetKillRouterOptions;
  private readonly channel: string;
  private readonly pending = new Map<string, Pending>();
  private malformed = 0;
  private served = 0;

  constructor(options: FleetKillRouterOptions) {
    this.opts = options;
    this.channel = options.redis.key('ctl', options.gatewayId);
  }

  /** Subscribe to this gateway's channel (the subscriber connection resubscribes after a reconnect). */
  async start(): Promise<void> {
    this.opts.redis.subscriber.on('message', this.onMessage);
    await this.opts.redis.subscriber.subscribe(this.channel);
  }

  async stop(): Promise<void> {
    this.opts.redis.subscriber.off('message', this.onMessage);
    for (const [id, p] of this.pending) {
      p.timer.cancel();
      this.pending.delete(id);
    }
    // Only on a live connection: a queued UNSUBSCRIBE would wait for a Redis that may never come back.
    const { subscriber } = this.opts.redis;
    if (subscriber.status === 'ready') await subscriber.unsubscribe(this.channel).catch(() => undefined);
  }

  /** Ask `gateway` to end the session; resolves true when it did, false when it had no such session. */
  async kill(gateway: string, id: string, reason: EndReason, message: string): Promise<boolean> {
    return (await this.request(gateway, { type: 'kill', id, reason, message })) > 0;
  }

  /** Ask `gateway` to end all of the user's sessions there; resolves with how many ended. */
  killUser(gateway: string, user: string, reason: EndReason, message: string): Promise<number> {
    return this.request(gateway, { type: 'kill_user', user, reason, message });
  }

  stats(): { readonly served: number; readonly malformed: number } {
    return { served: this.served, malformed: this.malformed };
  }

  private async request(gateway: string, body: RequestBody): Promise<number> {
    const { redis, gatewayId, timeoutMs, clock } = this.opts;
    const requestId = randomUUID();
    const reply = new Promise<number | null>((resolve) => {
      const timer = clock.setTimeout(() => {
        this.pending.delete(requestId);
        resolve(null);
      }, timeoutMs);
      this.pending.set(requestId, { resolve, timer });
    });
    let receivers: number;
    try {
      receivers = await redis.commands.publish(redis.key('ctl', gateway), JSON.stringify({ ...body, requestId, from: gatewayId }));
    } catch (err) {
      this.forget(requestId);
      redis.markFailed(err);
      throw new QuicgateError('QG_ERR_FLEET_UNAVAILABLE', `Redis did not take the request for gateway ${gateway}: ${errorText(err)}`, { details: { gateway }, cause: err });
    }
    if (receivers === 0) {
      this.forget(requestId);
      throw new QuicgateError('QG_ERR_FLEET_UNREACHABLE', `gateway ${gateway} is not listening for fleet requests (down or cut off from Redis)`, { details: { gateway } });
    }
    const closed = await reply;
    if (closed === null) {
      throw new QuicgateError('QG_ERR_FLEET_TIMEOUT', `gateway ${gateway} did not answer within ${timeoutMs} ms; the session may still end`, {
        details: { gateway, timeoutMs },
      });
    }
    return closed;
  }

  private forget(requestId: string): void {
    this.pending.get(requestId)?.timer.cancel();
    this.pending.delete(requestId);
  }

  private readonly onMessage = (channel: string, text: string): void => {
    if (channel !== this.channel) return;
    let parsed: RoutedMessage;
    try {
      parsed = messageSchema.parse(JSON.parse(text));
    } catch {
      this.malformed++;
      this.opts.logger.warn({ channel, bytes: text.length }, 'fleet: malformed control message dropped');
      return;
    }
    if (parsed.type === 'reply') {
      const p = this.pending.get(parsed.requestId);
      if (p === undefined) return;
      p.timer.cancel();
      this.pending.delete(parsed.requestId);
      p.resolve(parsed.closed);
      return;
    }
    this.serve(parsed);
  };

  private serve(request: RoutedRequest): void {
    const { handler, logger, redis } = this.opts;
    let closed = 0;
    try {
      closed = request.type === 'kill' ? (handler.killSession(request.id, request.reason, request.message) ? 1 : 0) : handler.killUser(request.user, request.reason, request.message);
    } catch (err) {
      logger.error({ err, request: request.type }, 'fleet: a routed kill failed');
    }
    this.served++;
    logger.info({ from: request.from, request: request.type, target: request.type === 'kill' ? request.id : request.user, reason: request.reason, closed }, 'fleet: routed kill served');
    void this.reply(request.from, JSON.stringify({ type: 'reply', requestId: request.requestId, closed }));
  }

  /** A reply is small and the requester waits for it: a command that timed out (a busy host) is sent again. */
  private async reply(to: string, text: string): Promise<void> {
    const { redis, logger } = this.opts;
    for (let attempt = 1; ; attempt++) {
      try {
        await redis.commands.publish(redis.key('ctl', to), text);
        return;
      } catch (err) {
        if (attempt >= REPLY_ATTEMPTS) {
          redis.markFailed(err);
          logger.warn({ err: errorText(err), to }, 'fleet: reply to a routed kill was lost');
          return;
        }
      }
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
