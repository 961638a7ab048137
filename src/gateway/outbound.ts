/**
 * Outbound pipeline: TUN → tunnel (gateway to client).
 *
 *   TUN batch ──► check IP header ──► destination → peer (RouteTable) ──► user's shared bucket
 *        │              │ bad: drop malformed        │ none: drop no_route      │ over: shape ≤ delay, else drop
 *        │                                                                     ▼
 *        └────────────── end of batch: flush every touched connection ◄── connection.sendPacket (coalesced)
 *
 * A super-packet (TSO read, src/tun/device.ts) goes across as one unit when the connection carries them and
 * the user has no bucket; else it is segmented natively (src/tun/gso.ts) and each segment takes the path
 * above, so a limited user's bucket is charged, and shaped, by the real packets' bytes.
 *
 * Per packet: no allocation, no promise, no log line, no registry lookup. Counters of the session are plain
 * stores; liveness (lastActivity) is stamped only by what the client sends (inbound.ts).
 */
import type { Clock } from '../clock.js';
import { GSO_META, superPacketSegments, superPacketWireBytes, type TunBatch } from '../tun/device.js';
import { GsoSplitter } from '../tun/gso.js';
import { MAX_WIRE_SUPER_PACKET_BYTES } from '../transport/framing.js';
import { checkIpPacket, ipv4Destination } from '../packet/ip.js';
import type { DropCounters } from './drops.js';
import type { TunnelPeer } from './peer.js';
import type { RouteTable } from './route-table.js';
import { shapeOrDrop, ShapingQueue, type ShaperSink } from './shaper.js';

export class OutboundPipeline {
  private batchNumber = 0;
  /** Peers of the current batch; slots are cleared after the flush (a closed session must not stay reachable). */
  private readonly touched: (TunnelPeer | undefined)[] = [];
  private touchedCount = 0;

  constructor(
    private readonly routes: RouteTable,
    private readonly drops: DropCounters,
    private readonly clock: Clock,
    private readonly shapingDelayMs: number,
    /** Segments super-packets that cannot go as a unit (shared with the inbound side). */
    private readonly splitter: GsoSplitter = new GsoSplitter(1500),
  ) {}

  /** TunBatchHandler; bound once so the TUN can call it directly. */
  readonly handleBatch = (batch: TunBatch): void => {
    const now = this.clock.now();
    const mark = ++this.batchNumber;
    const { data, lengths, stride, count, meta } = batch;
    for (let i = 0; i < count; i++) {
      const offset = i * stride;
      const length = lengths[i]!;
      const version = checkIpPacket(data, offset, length);
      let peer: TunnelPeer | undefined;
      if (version === 4) peer = this.routes.lookupV4(ipv4Destination(data, offset));
      else if (version === 6) peer = this.routes.lookupV6Destination(data, offset);
      else {
        this.drops.malformed++;
        continue;
      }
      if (peer === undefined) {
        this.drops.no_route++;
        continue;
      }
      const kind = meta[i * GSO_META]!;
      if (kind === 0) this.forward(peer, data, offset, length, now);
      else this.forwardSuper(peer, data, offset, length, kind, meta[i * GSO_META + 1]!, meta[i * GSO_META + 2]!, now);
      if (peer.batchMark !== mark) {
        peer.batchMark = mark;
        this.touched[this.touchedCount++] = peer;
      }
    }
    for (let i = 0; i < this.touchedCount; i++) {
      const peer = this.touched[i]!;
      this.touched[i] = undefined;
      // No activity stamp: traffic towards a client says nothing about whether it is still there.
      peer.session.connection.flush();
    }
    this.touchedCount = 0;
  };

  private forward(peer: TunnelPeer, data: Buffer, offset: number, length: number, now: number): void {
    const session = peer.session;
    const bucket = session.bucket;
    if (bucket !== null) {
      const queued = peer.outboundPending;
      if (queued !== 0 || !bucket.tryConsume(length, now)) {
        const shaper = (peer.outShaper ??= new ShapingQueue(this.clock, this.sinkFor(peer), this.shapingDelayMs));
        shapeOrDrop(bucket, shaper, data, offset, length, now, this.shapingDelayMs, this.drops);
        return;
      }
    }
    if (session.connection.sendPacket(data, offset, length)) {
      session.counters.bytesOut += length;
      session.counters.packetsOut++;
    } else this.drops.send_queue_full++;
  }

  private forwardSuper(
    peer: TunnelPeer,
    data: Buffer,
    offset: number,
    length: number,
    kind: number,
    gsoSize: number,
    headerLength: number,
    now: number,
  ): void {
    const session = peer.session;
    const connection = session.connection;
    if (session.bucket === null && connection.carriesSuperPackets && length <= MAX_WIRE_SUPER_PACKET_BYTES) {
      if (connection.sendSuperPacket(data, offset, length, kind, gsoSize)) {
        session.counters.bytesOut += superPacketWireBytes(length, headerLength, gsoSize);
        session.counters.packetsOut += superPacketSegments(length, headerLength, gsoSize);
      } else this.drops.send_queue_full++;
      return;
    }
    const splitter = this.splitter;
    const segments = splitter.split(data, offset, length, kind, gsoSize);
    if (segments <= 0) {
      this.drops.malformed++;
      return;
    }
    const { data: out, lengths, stride } = splitter.batch;
    for (let s = 0; s < segments; s++) this.forward(peer, out, s * stride, lengths[s]!, now);
  }

  // Made once per peer when it first needs shaping (the shaper keeps it).
  private sinkFor(peer: TunnelPeer): ShaperSink {
    const { connection, counters } = peer.session;
    const drops = this.drops;
    return {
      send(data, offset, length) {
        if (connection.sendPacket(data, offset, length)) {
          counters.bytesOut += length;
          counters.packetsOut++;
        } else drops.send_queue_full++;
      },
      flush() {
        connection.flush();
      },
    };
  }
}
