/**
 * A tunnel session: one authenticated connection of one user with its tunnel addresses. The lifecycle is a
 * discriminated union; the forwarding path reads only the plain fields (bucket, counters, lastActivity).
 */
import type { TunnelConnection, TransportKind } from '../transport/types.js';
import type { TokenBucket } from './bucket.js';

export const END_REASONS = [
  'client_closed',
  'idle_timeout',
  'session_timeout',
  'admin_kill',
  'replaced',
  // The same client reconnected and proved it owns the session (resume secret): the new session takes over.
  'resumed',
  'user_removed',
  'quota_exceeded',
  'server_shutdown',
  'error',
  // Only written by history recovery for sessions a crashed gateway left open.
  'crash',
] as const;
export type EndReason = (typeof END_REASONS)[number];

export const REJECT_REASONS = [
  'auth_failed',
  'user_limit',
  'server_limit',
  'pool_exhausted',
  'user_disabled',
  'throttled',
  'quota_exceeded',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export type SessionState =
  | { readonly kind: 'open' }
  | { readonly kind: 'closed'; readonly reason: EndReason; readonly message: string | undefined; readonly endedAt: number };

/** Plain numbers written by the forwarding path once per batch; read by stats, metrics and history. */
export interface TrafficCounters {
  /** Client → gateway (received from the tunnel). */
  bytesIn: number;
  packetsIn: number;
  /** Gateway → client (sent into the tunnel). */
  bytesOut: number;
  packetsOut: number;
}

export interface Session {
  readonly id: string;
  readonly user: string;
  readonly connection: TunnelConnection;
  readonly transport: TransportKind;
  readonly peer: string;
  /** Canonical tunnel addresses, null where that family is not configured. */
  readonly ipv4: string | null;
  readonly ipv6: string | null;
  /** Wall-clock start (ms since epoch) and monotonic start (clock.now()). */
  readonly startedAt: number;
  readonly startedMono: number;
  /** Monotonic ms of the last packet or keepalive received from the client: one store per batch. */
  lastActivity: number;
  /**
   * The user's shared bucket (the very object every session of the user holds), null when unlimited.
   * Mutable: a reload that limits a previously unlimited user (or lifts a limit) swaps it on every session.
   */
  bucket: TokenBucket | null;
  readonly counters: TrafficCounters;
  state: SessionState;
}

export function newCounters(): TrafficCounters {
  return { bytesIn: 0, packetsIn: 0, bytesOut: 0, packetsOut: 0 };
}
