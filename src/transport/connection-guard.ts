/**
 * Bounds on the HTTP/2 listener's connections that carry no authenticated session: a slowloris host must not
 * hold file descriptors and memory, and a host that keeps guessing must cost as little as possible.
 *
 *   TCP accept (before node:tls wraps it) ─► source blocked (throttled past its budget)? ─► reset, no TLS work      closed{source_blocked}
 *              ─► pending ≥ max_pending / per source ≥ max_pending_per_source ─► reset   closed{limit_total|limit_source}
 *              ─► pending, deadline handshake_timeout armed
 *   secureConnection / session ─► the entry learns its TLS socket / HTTP/2 session (found by "address:port")
 *   admitted(peer) (a CONNECT passed admission) ─► not pending, deadline cleared, sessions + 1
 *   released(peer) (that WebTransport session ended) ─► sessions - 1; at 0 pending again with a new deadline
 *   refused(peer) (a CONNECT was refused) ─► no session on it: GOAWAY once the answer is out    closed{refused}
 *   deadline ─► destroyed: closed{handshake_timeout} (TLS unfinished), {connect_timeout} (TLS done, never
 *               admitted), {no_session} (its sessions ended and none came)
 *
 * It works on the node:http2 server the library creates (wt-lib findNodeHttp2Server), through its public
 * events only. The library's HTTP/3 (QUIC over UDP) has no per-connection hook: its connections are bounded on
 * their datagrams by h3-connection-guard.ts, its session requests by h3-session-guard.ts.
 */
import type { Http2Session } from 'node:http2';
import type { Server, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { H3SessionGuardStats } from './h3-session-guard.js';
import { sourceKey } from './source-key.js';

export const GUARD_CLOSE_REASONS = [
  'handshake_timeout',
  'connect_timeout',
  'no_session',
  'refused',
  'limit_total',
  'limit_source',
  'source_blocked',
] as const;
export type GuardCloseReason = (typeof GUARD_CLOSE_REASONS)[number];

export interface ConnectionGuardOptions {
  readonly handshakeTimeoutMs: number;
  readonly maxPending: number;
  readonly maxPendingPerSource: number;
  /** True when new connections from this address are dropped at accept (e.g. throttled past its budget). */
  readonly sourceBlocked?: (address: string) => boolean;
  readonly logger: Logger;
  readonly clock?: Clock;
}

export interface ConnectionGuardStats {
  /** Connections without an admitted session now. */
  readonly pending: number;
  /** All connections the guard tracks now (pending or carrying sessions). */
  readonly open: number;
  /** Connections closed or refused by the guard since start, by reason. */
  readonly closed: Readonly<Record<GuardCloseReason, number>>;
  /** The HTTP/3 listener's session requests (h3-session-guard.ts), when it has one. */
  readonly h3?: H3SessionGuardStats;
  /** HTTP/3 connections cut by h3-connection-guard.ts that QUICHE may still hold (included in `open`). */
  readonly h3Cut?: number;
}

/** Several guards' stats as one: counts added, the HTTP/3 parts kept. */
export function sumGuardStats(parts: readonly ConnectionGuardStats[]): ConnectionGuardStats {
  const closed = Object.fromEntries(GUARD_CLOSE_REASONS.map((r) => [r, 0])) as Record<GuardCloseReason, number>;
  for (const part of parts) for (const reason of GUARD_CLOSE_REASONS) closed[reason] += part.closed[reason] ?? 0;
  const h3 = parts.find((p) => p.h3 !== undefined)?.h3;
  const h3Cut = parts.find((p) => p.h3Cut !== undefined)?.h3Cut;
  return {
    pending: parts.reduce((a, p) => a + p.pending, 0),
    open: parts.reduce((a, p) => a + p.open, 0),
    closed,
    ...(h3 === undefined ? {} : { h3 }),
    ...(h3Cut === undefined ? {} : { h3Cut }),
  };
}

interface Entry {
  readonly peer: string;
  readonly source: string;
  readonly raw: Socket;
  tls: TLSSocket | null;
  h2: Http2Session | null;
  /** Admitted WebTransport sessions on this connection. */
  sessions: number;
  /** It carried a session once (its deadline then means no_session). */
  hadSession: boolean;
  pending: boolean;
  timer: TimerHandle | null;
  gone: boolean;
}

/** Why one more not-yet-authenticated peer from `address` is refused, or null (shared with h3-session-guard.ts). */
export function pendingRefusal(
  options: ConnectionGuardOptions,
  address: string,
  source: string,
  total: number,
  bySource: ReadonlyMap<string, number>,
): 'source_blocked' | 'limit_total' | 'limit_source' | null {
  if (options.sourceBlocked?.(address)) return 'source_blocked';
  if (total >= options.maxPending) return 'limit_total';
  if ((bySource.get(source) ?? 0) >= options.maxPendingPerSource) return 'limit_source';
  return null;
}

const peerOf = (socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string | null =>
  socket.remoteAddress === undefined || socket.remotePort === undefined ? null : `${socket.remoteAddress}:${socket.remotePort}`;

export class ConnectionGuard {
  private readonly entries = new Map<string, Entry>();
  private readonly pendingBySource = new Map<string, number>();
  private pendingTotal = 0;
  private readonly closedCounts = Object.fromEntries(GUARD_CLOSE_REASONS.map((r) => [r, 0])) as Record<GuardCloseReason, number>;
  private readonly clock: Clock;
  private limitLogged = false;

  constructor(private readonly options: ConnectionGuardOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** Watch `server` (a tls.Server, e.g. node:http2's secure server). */
  attach(server: Server): void {
    // Refusals are decided before node:tls sees the socket: its own 'connection' listener (which builds the
    // TLSSocket and its SSL state) runs only for accepted connections.
    const inner = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (!this.onAccept(socket)) return;
      for (const listener of inner) listener.call(server, socket);
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      const entry = this.entryOf(socket);
      if (entry === undefined) return;
      entry.tls = socket;
      socket.once('close', () => this.forget(entry));
    });
    server.on('session', (session: Http2Session) => {
      const entry = session.socket === undefined ? undefined : this.entryOf(session.socket);
      if (entry !== undefined) entry.h2 = session;
    });
  }

  /** A CONNECT on `peer`'s connection passed admission: it now carries a session. */
  admitted(peer: string): void {
    const entry = this.entries.get(peer);
    if (entry === undefined) return;
    if (entry.pending) this.setPending(entry, false);
    entry.sessions++;
    entry.hadSession = true;
  }

  /** A session admitted on `peer`'s connection ended (or never opened). */
  released(peer: string): void {
    const entry = this.entries.get(peer);
    if (entry === undefined || entry.sessions === 0) return;
    entry.sessions--;
    if (entry.sessions === 0 && !entry.gone) this.setPending(entry, true);
  }

  /** A CONNECT on `peer`'s connection was refused: one without a session is closed once the answer is sent. */
  refused(peer: string): void {
    const entry = this.entries.get(peer);
    if (entry === undefined || entry.sessions > 0 || entry.gone) return;
    this.closedCounts.refused++;
    // GOAWAY: the refusal's stream finishes (status and reason reach the client), then the socket closes.
    if (entry.h2 !== null && !entry.h2.closed) entry.h2.close();
    else this.destroy(entry);
  }

  stats(): ConnectionGuardStats {
    return { pending: this.pendingTotal, open: this.entries.size, closed: { ...this.closedCounts } };
  }

  /** Stop: cancel every deadline and close every connection still without a session. */
  close(): void {
    for (const entry of [...this.entries.values()]) {
      if (entry.sessions === 0) this.destroy(entry);
      else this.cancelTimer(entry);
    }
  }

  /** False when the connection was refused (and reset). */
  private onAccept(raw: Socket): boolean {
    const peer = peerOf(raw);
    if (peer === null) {
      raw.destroy();
      return false;
    }
    const address = raw.remoteAddress!;
    const source = sourceKey(address);
    const refuse = this.refusal(address, source);
    if (refuse !== null) {
      this.closedCounts[refuse]++;
      if (refuse === 'limit_total' && !this.limitLogged) {
        // Once per burst (re-armed when the pending count falls back): a flood must not flood the log.
        this.limitLogged = true;
        this.options.logger.warn({ pending: this.pendingTotal, limit: this.options.maxPending }, 'too many connections without a session; new ones are reset');
      }
      raw.resetAndDestroy();
      return false;
    }
    const entry: Entry = { peer, source, raw, tls: null, h2: null, sessions: 0, hadSession: false, pending: false, timer: null, gone: false };
    this.entries.set(peer, entry);
    this.setPending(entry, true);
    raw.once('close', () => this.forget(entry));
    return true;
  }

  private refusal(address: string, source: string): GuardCloseReason | null {
    return pendingRefusal(this.options, address, source, this.pendingTotal, this.pendingBySource);
  }

  private entryOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): Entry | undefined {
    const peer = peerOf(socket);
    return peer === null ? undefined : this.entries.get(peer);
  }

  private setPending(entry: Entry, pending: boolean): void {
    if (entry.pending === pending) return;
    entry.pending = pending;
    const delta = pending ? 1 : -1;
    this.pendingTotal += delta;
    const bySource = (this.pendingBySource.get(entry.source) ?? 0) + delta;
    if (bySource > 0) this.pendingBySource.set(entry.source, bySource);
    else this.pendingBySource.delete(entry.source);
    this.cancelTimer(entry);
    if (pending) entry.timer = this.clock.setTimeout(() => this.expire(entry), this.options.handshakeTimeoutMs);
    else if (this.pendingTotal < this.options.maxPending / 2) this.limitLogged = false;
  }

  private cancelTimer(entry: Entry): void {
    entry.timer?.cancel();
    entry.timer = null;
  }

  private expire(entry: Entry): void {
    entry.timer = null;
    if (entry.gone || !entry.pending) return;
    this.closedCounts[entry.hadSession ? 'no_session' : entry.tls === null ? 'handshake_timeout' : 'connect_timeout']++;
    this.destroy(entry);
  }

  private destroy(entry: Entry): void {
    if (entry.h2 !== null && !entry.h2.destroyed) {
      // close() first: it marks the session closed at once, and the library's per-session ping timer only checks
      // `closed` (a ping on a destroyed, not yet closed session throws uncaught; it crashed the gateway when that
      // timer fell in the same turn as our deadline).
      entry.h2.close();
      entry.h2.destroy();
    }
    if (entry.tls !== null) entry.tls.destroy();
    // Before TLS is done only the raw socket is known; a reset frees it at once (a FIN would wait for the peer).
    else if (!entry.raw.destroyed) entry.raw.resetAndDestroy();
    this.forget(entry);
  }

  private forget(entry: Entry): void {
    if (entry.gone) return;
    this.setPending(entry, false);
    entry.gone = true;
    entry.sessions = 0;
    entry.tls = null;
    entry.h2 = null;
    if (this.entries.get(entry.peer) === entry) this.entries.delete(entry.peer);
  }
}
