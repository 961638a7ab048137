/**
 * Inbound pipeline: tunnel → TUN (client to gateway). One receiver per session, made at connect.
 *
 *   datagram ──► packets ──► check IP header ──► source must be the session's own ──► destination policy
 *                                 │ bad: malformed          │ else: drop spoofed       │ another client and
 *                                 │                                                    │ !allow_client_to_client:
 *                                 ▼                                                    ▼ drop client_to_client
 *                        user's shared bucket ──► over: shape ≤ delay, else drop ──► staged TUN write (one
 *                                                                                      writeBatch per task, all
 *                                                                                      sessions; refused: tun_full)
 *   super-packet (framing v2): same checks ──► no bucket: one TUN write for the unit (writeGso) / bucket:
 *                                              segmented natively, each segment charged as above
 *   end of datagram: one activity stamp.
 *
 * Per packet: no allocation, no promise, no log line, no registry lookup.
 */
import type { Clock } from '../clock.js';
import { superPacketHeaderLength } from '../tun/device.js';
import type { GsoSplitter } from '../tun/gso.js';
import type { TunWriteAccount, TunWriter } from '../tun/writer.js';
import type { PacketReceiver } from '../transport/types.js';
import {
  checkIpPacket,
  ipv4Destination,
  ipv4Source,
  ipv6SourceWord,
} from '../packet/ip.js';
import type { DropCounters } from './drops.js';
import type { TunnelPeer } from './peer.js';
import type { RouteTable } from './route-table.js';
import { shapeOrDrop, ShapingQueue, type ShaperSink } from './shaper.js';

export interface InboundOptions {
  readonly clock: Clock;
  /** Shared by all sessions: one writeBatch per task lets the device coalesce flows (native/src/gro.h). */
  readonly writer: TunWriter;
  readonly routes: RouteTable;
  readonly drops: DropCounters;
  readonly shapingDelayMs: number;
  readonly allowClientToClient: boolean;
  /** Segments super-packets of users with a bucket (shared by all sessions). */
  readonly splitter: GsoSplitter;
}

export class InboundReceiver implements PacketReceiver {
  /**
   * The datagram's time, read once on its first packet. Null between datagrams, so the field holds a tagged
   * value: a double-typed field is read unboxed and would be boxed anew for every packet's bucket call.
   */
  private batchNow: number | null = null;
  private readonly sink: ShaperSink;
  private readonly account: TunWriteAccount;

  constructor(
    private readonly peer: TunnelPeer,
    private readonly options: InboundOptions,
  ) {
    const { writer, drops } = options;
    const counters = peer.session.counters;
    const account: TunWriteAccount = {
      written(length, packets) {
        counters.bytesIn += length;
        counters.packetsIn += packets;
      },
      refused() {
        drops.tun_full++;
      },
      malformed() {
        drops.malformed++;
      },
    };
    this.account = account;
    this.sink = {
      send(data, offset, length) {
        writer.stage(data, offset, length, account);
      },
      flush() {},
    };
  }

  onPacket(data: Buffer, offset: number, length: number): void {
    if (this.admit(data, offset, length)) this.charge(data, offset, length);
  }

  /**
   * A super-packet: the same checks; written to the TUN as one unit for a user without a bucket, else
   * segmented so the bucket is charged (and shapes) by the real packets.
   */
  onSuperPacket(data: Buffer, offset: number, length: number, kind: number, gsoSize: number): void {
    if (!this.admit(data, offset, length)) return;
    const { drops, writer, splitter } = this.options;
    if (this.peer.session.bucket === null) {
      const headerLength = superPacketHeaderLength(data, offset, length, kind);
      if (headerLength === 0) drops.malformed++;
      else writer.writeSuper(data, offset, length, kind, gsoSize, headerLength, this.account);
      return;
    }
    const segments = splitter.split(data, offset, length, kind, gsoSize);
    if (segments <= 0) {
      drops.malformed++;
      return;
    }
    const { data: out, lengths, stride } = splitter.batch;
    for (let s = 0; s < segments; s++) this.charge(out, s * stride, lengths[s]!);
  }

  /** Source must be the session's own, destination allowed; counts the drop otherwise. */
  private admit(data: Buffer, offset: number, length: number): boolean {
    const { drops, routes } = this.options;
    const peer = this.peer;
    const version = checkIpPacket(data, offset, length);
    if (version === 4) {
      if (!peer.hasV4 || ipv4Source(data, offset) !== peer.v4) {
        drops.spoofed++;
        return false;
      }
      if (!this.options.allowClientToClient && routes.lookupV4(ipv4Destination(data, offset)) !== undefined) {
        drops.client_to_client++;
        return false;
      }
    } else if (version === 6) {
      const w = peer.v6;
      if (
        !peer.hasV6 ||
        ipv6SourceWord(data, offset, 3) !== w[3] ||
        ipv6SourceWord(data, offset, 2) !== w[2] ||
        ipv6SourceWord(data, offset, 1) !== w[1] ||
        ipv6SourceWord(data, offset, 0) !== w[0]
      ) {
        drops.spoofed++;
        return false;
      }
      if (!this.options.allowClientToClient && routes.lookupV6Destination(data, offset) !== undefined) {
        drops.client_to_client++;
        return false;
      }
    } else {
      drops.malformed++;
      return false;
    }
    return true;
  }

  /** The user's shared bucket, then the staged TUN write. */
  private charge(data: Buffer, offset: number, length: number): void {
    const peer = this.peer;
    const now = this.batchNow ?? (this.batchNow = this.options.clock.now());
    const bucket = peer.session.bucket;
    if (bucket !== null) {
      const queued = peer.inboundPending;
      if (queued !== 0 || !bucket.tryConsume(length, now)) {
        const { clock, shapingDelayMs, drops } = this.options;
        const shaper = (peer.inShaper ??= new ShapingQueue(clock, this.sink, shapingDelayMs));
        shapeOrDrop(bucket, shaper, data, offset, length, now, shapingDelayMs, drops);
        return;
      }
    }
    this.sink.send(data, offset, length);
  }

  /** A datagram that does not decode is a bad item of this client's too: counted with the gateway's drops. */
  onMalformed(): void {
    this.options.drops.malformed++;
  }

  onBatchEnd(): void {
    this.peer.session.lastActivity = this.batchNow ?? this.options.clock.now();
    this.batchNow = null;
  }
}
