/**
 * The client's send side, fair per flow: when the connection's own bounded send queue (a FIFO in the
 * transport) is full, the device's packets wait here per flow and go on in deficit round robin by bytes, new
 * flows first (fq_codel's order, RFC 8290), instead of being tail-dropped in arrival order. So a UDP flood of
 * one app on the device, which keeps its rate whatever is lost, cannot fill the connection's queue ahead of
 * the same device's TCP upload, which backs off at every loss: when the tunnel (the path, the transport's CPU)
 * is what limits, the flood loses its excess here, the TCP flow keeps its share.
 *
 *   offer(packet) ──► nothing waits here: connection.sendPacket ──► taken: sent (the fast path, as before)
 *        │                                        └─ refused (its queue is full): waits here
 *        └─ something waits: waits here too, in the queue of its 5-tuple (flow-hash.ts, flow-table.ts);
 *           over CAPACITY_BYTES: the head of the fattest flow is dropped (fq_codel's overflow rule)
 *   pump() (the forwarder's end of every TUN batch, and a timer every RETRY_MS while packets wait)
 *        ──► flows in DRR order ──► head waited longer than MAX_WAIT_MS: dropped ──► connection.sendPacket
 *        ──► refused: stop until the next pump
 *
 * Nothing is allocated per packet (typed arrays of the flow table and one byte ring, packet-store.ts, made
 * when the first packet must wait); a timer is made per retry while packets wait. Packets waiting when the
 * connection changes are dropped (counted as disconnected): stale packets are worse than lost ones for TCP.
 *
 * Written by hand: fair queueing in front of our own transport queue, on the injectable Clock; the gateway's
 * scheduler shares its flow table and packet store (no library offers either).
 */
import type { Clock, TimerHandle } from '../clock.js';
import { FlowTable, NO_LIST } from '../gateway/flow-table.js';
import { PacketStore } from '../gateway/packet-store.js';
import { flowHash } from '../packet/flow-hash.js';
import type { TunnelConnection } from '../transport/types.js';

/**
 * Bytes that may wait here: 256 KiB, about 190 full-size packets: enough to give every flow of a device its
 * turn while the connection's queue (1024 packets by default) drains, small beside what already waits there.
 */
export const CAPACITY_BYTES = 256 * 1024;
/** A packet that waited longer than this is dropped instead of sent (the connection's queue waits more). */
export const MAX_WAIT_MS = 100;
/** While packets wait, the connection is offered them again this often (its queue gives no drain signal). */
export const RETRY_MS = 1;
/** Flow table: 32 sets of 8 ways, 256 flow queues for one device. */
const SETS = 32;
const SLOTS = 1024;

/** What the forwarder counts (ClientCounters' fields). */
export interface FairSendCounters {
  bytesSent: number;
  packetsSent: number;
  dropsQueueFull: number;
  dropsDisconnected: number;
}

export class FairSendQueue {
  private store: PacketStore<null> | null = null;
  private table: FlowTable | null = null;
  private connection: TunnelConnection | null = null;
  private packets = 0;
  private bytes = 0;
  private timer: TimerHandle | null = null;
  private readonly fire = (): void => {
    this.timer = null;
    const connection = this.connection;
    if (connection === null) return;
    this.pump(this.clock.now());
    connection.flush();
  };

  constructor(
    private readonly clock: Clock,
    private readonly counters: FairSendCounters,
    private readonly capacityBytes: number = CAPACITY_BYTES,
  ) {}

  /** Packets waiting here. */
  get queuedPackets(): number {
    return this.packets;
  }

  get queuedBytes(): number {
    return this.bytes;
  }

  /** Whether a retry timer is pending. */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** The connection packets go to from now on (null: none); what waits for the previous one is dropped. */
  setConnection(connection: TunnelConnection | null): void {
    if (connection === this.connection) return;
    this.counters.dropsDisconnected += this.packets;
    this.clear();
    this.connection = connection;
    if (connection === null) {
      this.store = null;
      this.table = null;
    }
  }

  /** One packet from the TUN (the connection is set); the caller flushes the connection after its batch. */
  offer(data: Buffer, offset: number, length: number, now: number): void {
    const connection = this.connection!;
    const c = this.counters;
    if (this.packets === 0 && connection.sendPacket(data, offset, length)) {
      c.bytesSent += length;
      c.packetsSent++;
      return;
    }
    if (length > this.capacityBytes) {
      c.dropsQueueFull++; // also every refused packet with capacity 0 (QUICGATE_CLIENT_SEND_FIFO=1)
      return;
    }
    const table = this.table ?? this.allocate();
    const store = this.store!;
    const f = table.lookup(flowHash(data, offset, length, 0));
    while (this.bytes + length > this.capacityBytes) {
      // fq_codel: the fattest flow loses its head; when this packet's flow is the fattest, that is its own.
      const victim = table.fattestBut(-1, 0, -1);
      if (victim < 0) break;
      c.dropsQueueFull++;
      this.dropHead(victim);
    }
    const slot = store.put(data, offset, length, now, null);
    if (slot < 0) {
      c.dropsQueueFull++; // the ring is full of packets freed out of order
      return;
    }
    if (table.heads[f]! < 0) table.heads[f] = slot;
    else store.next[table.tails[f]!] = slot;
    table.tails[f] = slot;
    table.packets[f] = table.packets[f]! + 1;
    table.bytes[f] = table.bytes[f]! + length;
    this.packets++;
    this.bytes += length;
    if (table.lists[f] === NO_LIST) table.addNew(f);
    if (this.timer === null) this.timer = this.clock.setTimeout(this.fire, RETRY_MS);
  }

  /** Hand waiting packets to the connection in DRR order until it refuses one (the caller flushes). */
  pump(now: number): void {
    const connection = this.connection;
    const table = this.table;
    if (connection === null || table === null || this.packets === 0) return;
    const store = this.store!;
    const c = this.counters;
    for (;;) {
      const f = table.select();
      if (f < 0) break;
      const slot = table.heads[f]!;
      const length = store.lengths[slot]!;
      if (now - store.arrivedAt[slot]! > MAX_WAIT_MS) {
        c.dropsQueueFull++;
        this.dropHead(f);
        continue;
      }
      if (!connection.sendPacket(store.ring, store.offsets[slot]!, length)) break;
      c.bytesSent += length;
      c.packetsSent++;
      table.deficits[f] = table.deficits[f]! - length;
      this.dropHead(f);
    }
    if (this.packets === 0) {
      this.idle();
      return;
    }
    if (this.timer === null) this.timer = this.clock.setTimeout(this.fire, RETRY_MS);
  }

  private allocate(): FlowTable {
    this.store = new PacketStore<null>(this.capacityBytes * 2, SLOTS);
    this.table = new FlowTable(SETS);
    return this.table;
  }

  // Take the head packet off flow `f` (sent or dropped) and give its slot back.
  private dropHead(f: number): void {
    const table = this.table!;
    const store = this.store!;
    const slot = table.heads[f]!;
    const length = store.lengths[slot]!;
    const next = store.next[slot]!;
    table.heads[f] = next;
    if (next < 0) table.tails[f] = -1;
    table.bytes[f] = table.bytes[f]! - length;
    table.packets[f] = table.packets[f]! - 1;
    store.free(slot);
    this.bytes -= length;
    this.packets--;
  }

  // Forget what waits (the connection changed).
  private clear(): void {
    const table = this.table;
    if (table !== null) {
      for (let f = 0; f < table.flows; f++) while (table.packets[f]! > 0) this.dropHead(f);
    }
    this.idle();
  }

  // Nothing waits: every flow leaves its list (parked ones too), the timer stops.
  private idle(): void {
    this.table?.unlinkAll();
    if (this.timer !== null) {
      this.timer.cancel();
      this.timer = null;
    }
  }
}
