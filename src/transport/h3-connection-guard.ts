/**
 * Bounds on the library's HTTP/3 QUIC connections that never send a WebTransport session request. The library
 * (1.6.8) has no per-connection hook and no way to close one QUIC connection from JS (its native server's only
 * methods are recvPaket, processBufferedChlos, onCanWrite, destroy, setJSRequestHandler, addPath,
 * finishSessionRequest, updateCert; docs/robustness.md), but every UDP datagram reaches QUICHE through one JS
 * call (wt-lib gateHttp3Datagrams). So the guard works on datagrams, by connection ID (h3-packet.ts):
 *
 *   Initial of a new connection ─► source blocked (throttled)?                                ─► dropped  closed{source_blocked}
 *                               ─► held ≥ max_pending / per source ≥ max_pending_per_source ─► dropped  closed{limit_total|limit_source}
 *                               ─► pending, deadline handshake_timeout armed; QUICHE opens it
 *   session request from its address:port ─► no longer ours (the session guard, h3-session-guard.ts, bounds it)
 *   deadline ─► cut: every later datagram to its connection IDs is dropped, so the peer can no longer keep it
 *               alive, and QUICHE ends it by its own timers    closed{handshake_timeout} (no Handshake packet
 *               came: TLS unfinished) or {connect_timeout} (TLS done, no session request)
 *   a cut connection stays held (counted against the bounds) until QUICHE has surely dropped it: its idle
 *   timeout after a handshake, its crypto-handshake limit before one (QUICHE_* below); then forgotten.
 * A refused Initial costs QUICHE nothing: it never sees it. Per datagram of an established session: one byte
 * read, plus one index lookup (no allocation) while any connection is cut.
 */
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { GUARD_CLOSE_REASONS, pendingRefusal, type ConnectionGuardOptions, type ConnectionGuardStats, type GuardCloseReason } from './connection-guard.js';
import { PacketKind, cidKey, coalescesHandshake, dcidLength, dcidOffset, packetKind, serverConnectionIds } from './h3-packet.js';
import { sourceKey } from './source-key.js';
import { sourceOf } from './wt-auth.js';

/** QUICHE's idle timeout of the native module's server (QuicConfig default kMaximumIdleTimeoutSecs, 10 min). */
export const QUICHE_IDLE_TIMEOUT_MS = 600_000;
/** QUICHE's limit on a connection's crypto handshake (kMaxTimeForCryptoHandshakeSecs). */
export const QUICHE_HANDSHAKE_LIMIT_MS = 10_000;
/**
 * Slack: QUICHE's timers run on JS timers of a busy process, and a connection forgotten while QUICHE still holds
 * it could be revived by its peer. Measured on the module (bench/h3-linger.ts): gone 602-607 s after its last
 * datagram once its handshake was done, 5.5-6.5 s after its only Initial before (docs/robustness.md).
 */
const IDLE_SLACK_MS = 30_000;
const HANDSHAKE_SLACK_MS = 5_000;
/** Server connection IDs watched per connection: the first and those issued later (NEW_CONNECTION_ID). */
const SERVER_IDS_WATCHED = 8;
/** Refused connection attempts remembered so that their retransmitted Initials are not counted again. */
const REFUSED_REMEMBERED = 4096;

export interface H3ConnectionGuardOptions extends ConnectionGuardOptions {
  /** How long a cut connection that finished its handshake is held (QUICHE's idle timeout + slack by default). */
  readonly idleLingerMs?: number;
  /** A cut connection without a handshake is held until this long after its first Initial. */
  readonly handshakeLingerMs?: number;
}

export interface H3ConnectionStats extends ConnectionGuardStats {
  /** Cut connections QUICHE may still hold (counted against the bounds until it surely dropped them). */
  readonly cut: number;
}

interface Entry {
  readonly source: string;
  /** The peer as session requests name it (sourceOf: an IPv4-mapped address as IPv4). */
  readonly address: string;
  readonly port: number;
  /** The client's original destination ID and the server's IDs (h3-packet.ts serverConnectionIds). */
  readonly ids: readonly Buffer[];
  readonly keys: readonly number[];
  readonly firstMs: number;
  /** pending: counted, deadline armed; cut: counted, datagrams dropped; requested: it sent its session request. */
  state: 'pending' | 'cut' | 'requested';
  /** A Handshake packet came from the client: its TLS handshake may be done, QUICHE keeps it to its idle timeout. */
  handshake: boolean;
  timer: TimerHandle | null;
}

/** An IPv4-mapped IPv6 address as IPv4 (a udp6 socket's peers and the library's session requests differ). */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

export class H3ConnectionGuard {
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly byKey = new Map<number, Entry[]>();
  private readonly entries = new Set<Entry>();
  private readonly bySource = new Map<string, number>();
  private readonly refused = new Set<number>();
  private pendingCount = 0;
  private cutCount = 0;
  private readonly closedCounts = Object.fromEntries(GUARD_CLOSE_REASONS.map((r) => [r, 0])) as Record<GuardCloseReason, number>;
  private limitLogged = false;
  private readonly idleLingerMs: number;
  private readonly handshakeLingerMs: number;

  constructor(private readonly options: H3ConnectionGuardOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger;
    this.idleLingerMs = options.idleLingerMs ?? QUICHE_IDLE_TIMEOUT_MS + IDLE_SLACK_MS;
    this.handshakeLingerMs = options.handshakeLingerMs ?? QUICHE_HANDSHAKE_LIMIT_MS + HANDSHAKE_SLACK_MS;
  }

  /** A datagram from address:port is about to reach QUICHE: false drops it. */
  onDatagram(msg: Buffer, address: string, port: number): boolean {
    const kind = packetKind(msg);
    if (kind === PacketKind.Other) return true;
    if (kind === PacketKind.Short) return this.cutCount === 0 || this.find(msg, 1, dcidLength(msg))?.state !== 'cut';
    const entry = this.find(msg, dcidOffset(msg), dcidLength(msg));
    if (entry !== undefined) {
      if (entry.state === 'cut') return false;
      if (!entry.handshake && (kind === PacketKind.Handshake || coalescesHandshake(msg))) entry.handshake = true;
      return true;
    }
    // A Handshake packet of a connection we do not hold (one that sent its session request): QUICHE's.
    if (kind === PacketKind.Handshake) return true;
    return this.admit(msg, address, port);
  }

  /**
   * A session request came from `peer` ("address:port"): its connection is the session guard's now. It stays
   * known, uncounted, until QUICHE's handshake limit: a late Initial of it must not look like a new connection.
   */
  sessionRequest(peer: string): void {
    const address = plainAddress(sourceOf(peer));
    const port = Number(peer.slice(peer.lastIndexOf(':') + 1));
    for (const entry of this.entries) {
      if (entry.state !== 'pending' || entry.port !== port || entry.address !== address) continue;
      this.uncount(entry);
      entry.state = 'requested';
      entry.timer?.cancel();
      entry.timer = this.clock.setTimeout(() => this.forget(entry), Math.max(0, entry.firstMs + this.handshakeLingerMs - this.clock.now()));
    }
  }

  stats(): H3ConnectionStats {
    return { pending: this.pendingCount, open: this.pendingCount + this.cutCount, cut: this.cutCount, closed: { ...this.closedCounts } };
  }

  /** Stop: every deadline cancelled (the listener's stop ends QUICHE and its connections). */
  close(): void {
    for (const entry of [...this.entries]) this.forget(entry);
    this.refused.clear();
  }

  private admit(msg: Buffer, address: string, port: number): boolean {
    const offset = dcidOffset(msg);
    const length = dcidLength(msg);
    const key = cidKey(msg, offset, length);
    const source = sourceKey(address);
    const refusal = pendingRefusal(this.options, address, source, this.pendingCount + this.cutCount, this.bySource);
    if (refusal !== null) {
      // Counted once per connection attempt: its retransmitted Initials carry the same destination ID.
      if (!this.refused.has(key)) {
        if (this.refused.size >= REFUSED_REMEMBERED) this.refused.delete(this.refused.values().next().value!);
        this.refused.add(key);
        this.closedCounts[refusal]++;
      }
      if (refusal === 'limit_total' && !this.limitLogged) {
        this.limitLogged = true;
        this.logger.warn({ held: this.pendingCount + this.cutCount, limit: this.options.maxPending }, 'too many HTTP/3 connections without a session request; new ones are dropped');
      }
      return false;
    }
    const original = Buffer.from(msg.subarray(offset, offset + length));
    const ids = [original, ...serverConnectionIds(original, SERVER_IDS_WATCHED).filter((id) => !id.equals(original))];
    const entry: Entry = { source, address: plainAddress(address), port, ids, keys: ids.map((id) => cidKey(id, 0, id.length)), firstMs: this.clock.now(), state: 'pending', handshake: false, timer: null };
    this.entries.add(entry);
    for (const k of entry.keys) {
      const list = this.byKey.get(k);
      if (list === undefined) this.byKey.set(k, [entry]);
      else list.push(entry);
    }
    this.bySource.set(source, (this.bySource.get(source) ?? 0) + 1);
    this.pendingCount++;
    entry.timer = this.clock.setTimeout(() => this.cut(entry), this.options.handshakeTimeoutMs);
    return true;
  }

  /** The entry holding the connection ID at msg[offset, offset + length), if any (no allocation). */
  private find(msg: Buffer, offset: number, length: number): Entry | undefined {
    const list = this.byKey.get(cidKey(msg, offset, length));
    if (list === undefined) return undefined;
    for (const entry of list) for (const id of entry.ids) if (id.length === length && msg.compare(id, 0, length, offset, offset + length) === 0) return entry;
    return undefined;
  }

  private cut(entry: Entry): void {
    entry.state = 'cut';
    this.pendingCount--;
    this.cutCount++;
    this.closedCounts[entry.handshake ? 'connect_timeout' : 'handshake_timeout']++;
    const linger = entry.handshake ? this.idleLingerMs : Math.max(0, entry.firstMs + this.handshakeLingerMs - this.clock.now());
    entry.timer = this.clock.setTimeout(() => this.forget(entry), linger);
  }

  private forget(entry: Entry): void {
    if (!this.entries.delete(entry)) return;
    entry.timer?.cancel();
    entry.timer = null;
    this.uncount(entry);
    for (const k of entry.keys) {
      const list = this.byKey.get(k);
      if (list === undefined) continue;
      const rest = list.filter((e) => e !== entry);
      if (rest.length > 0) this.byKey.set(k, rest);
      else this.byKey.delete(k);
    }
  }

  /** No longer counted against the bounds (idempotent: a requested entry is not counted). */
  private uncount(entry: Entry): void {
    if (entry.state === 'requested') return;
    if (entry.state === 'cut') this.cutCount--;
    else this.pendingCount--;
    const left = (this.bySource.get(entry.source) ?? 1) - 1;
    if (left > 0) this.bySource.set(entry.source, left);
    else this.bySource.delete(entry.source);
    if (this.pendingCount + this.cutCount < this.options.maxPending / 2) this.limitLogged = false;
  }
}
