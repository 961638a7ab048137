/**
 * The narrow interface the gateway and the client need from a TUN device (after wireguard-go's tun.Device).
 * Two implementations: LinuxTun (native addon, src/tun/linux.ts) and MemoryTun (in-memory double, src/tun/memory.ts).
 *
 * Packets are raw IP (no packet-info header). Reads arrive as batches: one Buffer holding `count` packets,
 * packet i at offset `i * stride` with length `lengths[i]`. The batch and its buffers are reused: they are
 * valid only during the handler call.
 */
export interface TunBatch {
  readonly data: Buffer;
  readonly lengths: Uint32Array;
  readonly stride: number;
  count: number;
}

export type TunBatchHandler = (batch: TunBatch) => void;

export interface TunDevice {
  readonly name: string;
  readonly mtu: number;
  /** Start delivering batches to `handler` (one handler; a second call replaces it). */
  onBatch(handler: TunBatchHandler): void;
  /** Write one packet; returns false if the kernel refused it (e.g. queue full), which callers count as a drop. */
  write(data: Uint8Array, offset: number, length: number): boolean;
  /**
   * Write `batch.count` packets laid out like a read batch; returns how many were accepted and, when given,
   * sets status[i] to 1 (accepted) or 0 (refused). The device may coalesce flows into fewer, larger writes and
   * rewrite headers in place, so `batch` must be the caller's own staging buffer (see TunWriter).
   */
  writeBatch(batch: TunBatch, status?: Uint8Array): number;
  /** Stop reading and close the device. Idempotent. */
  close(): Promise<void>;
}

export interface TunAddress {
  /** "198.18.0.1/16" or "2001:db8::1/64" */
  readonly cidr: string;
}

export interface TunSettings {
  readonly name: string;
  readonly mtu: number;
  /**
   * A lower MTU for IPv4 only, set on the device's IPv4 routes (TCP's MSS follows it): where IPv6's 1280
   * minimum holds the device MTU above what the transport carries whole (HTTP/3, transport/mtu.ts).
   */
  readonly ipv4Mtu?: number;
  readonly addresses: readonly TunAddress[];
  /** CIDRs routed into the device. */
  readonly routes: readonly string[];
  readonly txQueueLen?: number;
  /** Coalesce flows on writeBatch where the device can (LinuxTun: virtio-net header, GSO); default true. */
  readonly offload?: boolean;
}

/** Packets per read batch: enough to amortise the JS call (see /work/shared/notes/tun.md), small enough for cache. */
export const DEFAULT_TUN_BATCH_SIZE = 64;

/** Slot size for packets of at most `mtu` bytes: headroom, rounded to a cache line. */
export function tunStride(mtu: number): number {
  return Math.ceil((mtu + 64) / 64) * 64;
}

/** An empty batch with the layout both TunDevice implementations fill (one Buffer, `maxPackets` slots). */
export function createTunBatch(mtu: number, maxPackets: number = DEFAULT_TUN_BATCH_SIZE): TunBatch {
  const stride = tunStride(mtu);
  return { data: Buffer.alloc(stride * maxPackets), lengths: new Uint32Array(maxPackets), stride, count: 0 };
}

/** Packet `index` of a batch, as a view into the batch buffer (valid only during the handler call). */
export function tunPacket(batch: TunBatch, index: number): Buffer {
  const start = index * batch.stride;
  return batch.data.subarray(start, start + (batch.lengths[index] ?? 0));
}
