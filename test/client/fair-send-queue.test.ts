/**
 * The client's fair send queue on a fake clock, in front of a connection double whose bounded queue drains
 * at a fixed link rate (as the transport's send queue does when the tunnel is what limits): flows of one
 * device share that rate by bytes whatever they offer, a sparse flow's packets go almost at once, stale
 * packets are dropped, what waits for a connection that went is counted, and nothing is allocated per packet.
 */
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { FairSendQueue, MAX_WAIT_MS, RETRY_MS, type FairSendCounters } from '../../src/client/fair-send-queue.js';
import type { CloseInfo, TunnelConnection, TunnelStats } from '../../src/transport/types.js';
import { measureAllocationQuietest } from '../support/alloc.js';
import { BareClock } from '../support/bare-clock.js';

const TCP = 6;
const UDP = 17;

/** An IPv4 packet of `size` bytes from 198.18.0.2:`port` to 198.18.1.1:443, its flow's number at byte 24. */
function packet(size: number, protocol: number, port: number): Buffer {
  const p = Buffer.alloc(size);
  p[0] = 0x45;
  p.writeUInt16BE(size, 2);
  p[8] = 64;
  p[9] = protocol;
  p.set([198, 18, 0, 2], 12);
  p.set([198, 18, 1, 1], 16);
  p.writeUInt16BE(port, 20);
  p.writeUInt16BE(443, 22);
  p.writeUInt16BE(port, 24);
  return p;
}

/** A connection whose queue holds `queueBytes` and drains `bytesPerMs` (drain(ms)); it records what it took. */
class LinkConnection implements TunnelConnection {
  readonly kind = 'memory' as const;
  readonly peer = '192.0.2.1:443';
  readonly stats: TunnelStats = { datagramsSent: 0, datagramsReceived: 0, queueDrops: 0, malformed: 0 };
  readonly maxDatagramBytes = 1400;
  readonly carriesSuperPackets = false;
  readonly closed: Promise<CloseInfo> = new Promise<CloseInfo>(() => {});
  /** Bytes taken per flow (the number at byte 24, below 8), and when each packet of flow `track` was taken. */
  readonly taken = new Float64Array(8);
  readonly trackedAt: number[] = [];
  track = -1;
  queued = 0;
  constructor(
    private readonly clock: { now(): number },
    public queueBytes: number,
    private readonly bytesPerMs: number,
  ) {}
  sendPacket(data: Uint8Array, offset: number, length: number): boolean {
    if (this.queued + length > this.queueBytes) {
      this.stats.queueDrops++;
      return false;
    }
    this.queued += length;
    const flow = (data[offset + 24]! << 8) | data[offset + 25]!;
    this.taken[flow & 7] = this.taken[flow & 7]! + length;
    if (flow === this.track) this.trackedAt.push(this.clock.now());
    return true;
  }
  drain(ms: number): void {
    this.queued = Math.max(0, this.queued - ms * this.bytesPerMs);
  }
  sendSuperPacket(): boolean {
    return false;
  }
  flush(): void {}
  setReceiver(): void {}
  setControlHandler(): void {}
  sendControl(): void {}
  close(): void {}
}

function counters(): FairSendCounters {
  return { bytesSent: 0, packetsSent: 0, dropsQueueFull: 0, dropsDisconnected: 0 };
}

/**
 * Runs `ms` of 0.1 ms steps: each flow offers `rate` bytes/ms in packets of its size, the link drains, and the
 * queue is pumped as the forwarder does at the end of each TUN batch.
 */
function run(
  clock: FakeClock,
  queue: FairSendQueue,
  link: LinkConnection,
  flows: readonly { packet: Buffer; rate: number }[],
  ms: number,
): void {
  const carry = flows.map(() => 0);
  for (let t = 0; t < ms * 10; t++) {
    clock.advance(0.1);
    link.drain(0.1);
    const now = clock.now();
    queue.pump(now);
    flows.forEach((f, i) => {
      carry[i]! += f.rate * 0.1;
      while (carry[i]! >= f.packet.length) {
        carry[i]! -= f.packet.length;
        queue.offer(f.packet, 0, f.packet.length, now);
      }
    });
  }
}

describe('FairSendQueue', () => {
  it('sends straight on while the connection takes packets (no queue, no timer)', () => {
    const clock = new FakeClock();
    const c = counters();
    const queue = new FairSendQueue(clock, c);
    const link = new LinkConnection(clock, 1 << 20, 1000);
    queue.setConnection(link);
    const p = packet(1200, UDP, 1);
    for (let i = 0; i < 100; i++) queue.offer(p, 0, p.length, clock.now());
    expect(c).toEqual({ bytesSent: 120_000, packetsSent: 100, dropsQueueFull: 0, dropsDisconnected: 0 });
    expect(queue.queuedPackets).toBe(0);
    expect(queue.armed).toBe(false);
  });

  it('shares a full link between a UDP flood and a TCP upload of one device by bytes (FIFO: by what they offer)', () => {
    // A 10 MB/s link (80 Mbit/s) behind a 64 KiB queue; the flood offers 3 times the link, the upload once.
    const share = (fair: boolean): number => {
      const clock = new FakeClock();
      const queue = new FairSendQueue(clock, counters());
      const link = new LinkConnection(clock, 64 * 1024, 10_000);
      queue.setConnection(link);
      const udp = packet(1228, UDP, 1);
      const tcp = packet(1400, TCP, 2);
      const flows = [
        { packet: udp, rate: 30_000 },
        { packet: tcp, rate: 10_000 },
      ];
      if (fair) run(clock, queue, link, flows, 2000);
      else {
        // The transport's queue alone: every packet offered straight to it, tail-dropped when full.
        const direct = { offer: (p: Buffer) => void link.sendPacket(p, 0, p.length), pump() {} } as unknown as FairSendQueue;
        run(clock, direct, link, flows, 2000);
      }
      const u = link.taken[1]!;
      const t = link.taken[2]!;
      expect(u + t).toBeGreaterThan(0.95 * 2000 * 10_000);
      return t / (u + t);
    };
    const fair = share(true);
    expect(fair).toBeGreaterThan(0.45);
    expect(fair).toBeLessThan(0.55);
    expect(share(false)).toBeLessThan(0.3);
  });

  it('lets a flow that offers less than its share through whole, the flood takes the rest', () => {
    const clock = new FakeClock();
    const c = counters();
    const queue = new FairSendQueue(clock, c);
    const link = new LinkConnection(clock, 64 * 1024, 10_000);
    queue.setConnection(link);
    const udp = packet(1228, UDP, 1);
    const small = packet(1400, TCP, 2);
    run(clock, queue, link, [
      { packet: udp, rate: 30_000 },
      { packet: small, rate: 2_000 },
    ], 2000);
    // All that the small flow offered, but what waited in the queue when the run ended.
    expect(link.taken.at(2)!).toBeGreaterThan(2000 * 2_000 - 64 * 1024);
    expect(link.taken.at(1)!).toBeGreaterThan(0.95 * 2000 * 8_000);
  });

  it('sends a sparse flow (a ping) within a pump or two of its arrival, ahead of the backlog', () => {
    const clock = new FakeClock();
    const c = counters();
    const queue = new FairSendQueue(clock, c);
    const link = new LinkConnection(clock, 64 * 1024, 10_000);
    queue.setConnection(link);
    link.track = 3;
    const udp = packet(1228, UDP, 1);
    const tcp = packet(1400, TCP, 2);
    run(clock, queue, link, [{ packet: udp, rate: 15_000 }, { packet: tcp, rate: 15_000 }], 200);
    const ping = packet(84, 1, 3);
    const offeredAt: number[] = [];
    for (let i = 0; i < 20; i++) {
      offeredAt.push(clock.now());
      queue.offer(ping, 0, ping.length, clock.now());
      run(clock, queue, link, [{ packet: udp, rate: 15_000 }, { packet: tcp, rate: 15_000 }], 50);
    }
    expect(link.trackedAt.length).toBe(20);
    // 0.2 ms: the link frees room for one full-size packet every 0.14 ms and the ping's flow is new.
    link.trackedAt.forEach((at, i) => expect(at - offeredAt[i]!).toBeLessThanOrEqual(0.2 + 1e-9));
  });

  it('retries on its own timer while packets wait, and stops it once none do', () => {
    const clock = new FakeClock();
    const c = counters();
    const queue = new FairSendQueue(clock, c);
    const link = new LinkConnection(clock, 2800, 1400);
    queue.setConnection(link);
    const p = packet(1400, TCP, 2);
    for (let i = 0; i < 6; i++) queue.offer(p, 0, p.length, clock.now());
    expect(c.packetsSent).toBe(2);
    expect(queue.queuedPackets).toBe(4);
    expect(queue.armed).toBe(true);
    for (let ms = 0; ms < 4; ms++) {
      link.drain(RETRY_MS);
      clock.advance(RETRY_MS);
    }
    expect(c.packetsSent).toBe(6);
    expect(queue.queuedPackets).toBe(0);
    expect(queue.armed).toBe(false);
    expect(clock.pendingTimers).toBe(0);
  });

  it('drops packets that waited longer than MAX_WAIT_MS instead of sending them', () => {
    const clock = new FakeClock();
    const c = counters();
    const queue = new FairSendQueue(clock, c);
    const link = new LinkConnection(clock, 1400, 1400);
    queue.setConnection(link);
    const p = packet(1400, TCP, 2);
    for (let i = 0; i < 5; i++) queue.offer(p, 0, p.length, clock.now());
    expect(c.packetsSent).toBe(1);
    clock.advance(MAX_WAIT_MS + 1); // the link does not drain meanwhile
    link.drain(1400);
    queue.pump(clock.now());
    expect(c).toMatchObject({ packetsSent: 1, dropsQueueFull: 4 });
    expect(queue.queuedPackets).toBe(0);
  });

  it('counts what waits for a connection that went as disconnected, and forgets it', () => {
    const clock = new FakeClock();
    const c = counters();
    const queue = new FairSendQueue(clock, c);
    const link = new LinkConnection(clock, 1400, 1400);
    queue.setConnection(link);
    const p = packet(1400, TCP, 2);
    for (let i = 0; i < 5; i++) queue.offer(p, 0, p.length, clock.now());
    queue.setConnection(null);
    expect(c).toMatchObject({ packetsSent: 1, dropsDisconnected: 4 });
    expect(queue.queuedPackets).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    const next = new LinkConnection(clock, 1 << 20, 1400);
    queue.setConnection(next);
    queue.offer(p, 0, p.length, clock.now());
    expect(next.taken.at(2)).toBe(1400);
  });

  it('bounds what waits: the fattest flow loses its head', () => {
    const clock = new FakeClock();
    const c = counters();
    const queue = new FairSendQueue(clock, c, 14_000);
    const link = new LinkConnection(clock, 0, 0);
    queue.setConnection(link);
    const udp = packet(1400, UDP, 1);
    const tcp = packet(1400, TCP, 2);
    for (let i = 0; i < 20; i++) queue.offer(udp, 0, udp.length, clock.now());
    for (let i = 0; i < 3; i++) queue.offer(tcp, 0, tcp.length, clock.now());
    expect(queue.queuedBytes).toBeLessThanOrEqual(14_000);
    expect(c.dropsQueueFull).toBe(13);
    // The link opens: TCP's three packets are all still there, beside seven of the flood's.
    link.queueBytes = 1 << 20;
    queue.pump(clock.now());
    expect(link.taken.at(2)).toBe(3 * 1400);
    expect(link.taken.at(1)).toBe(7 * 1400);
  });

  it('allocates nothing per packet (1e6 packets of three flows through a full link)', () => {
    const clock = new BareClock();
    const c = counters();
    const queue = new FairSendQueue(clock, c);
    const link = new LinkConnection(clock, 64 * 1024, 10_000);
    queue.setConnection(link);
    const packets = [packet(1228, UDP, 1), packet(1400, TCP, 2), packet(600, TCP, 3)];
    let n = 0;
    const loop = (iterations: number): number => {
      for (let i = 0; i < iterations; i++) {
        const p = packets[i % 3]!;
        queue.offer(p, 0, p.length, clock.now());
        if ((i & 15) === 15) {
          clock.advance(1);
          link.drain(1);
          queue.pump(clock.now());
        }
      }
      return (n += iterations);
    };
    const measured = measureAllocationQuietest(loop, 1_000_000);
    expect(c.dropsQueueFull).toBeGreaterThan(0);
    expect(measured.collections).toBeLessThanOrEqual(1);
  });
});
