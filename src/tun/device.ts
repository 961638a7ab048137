/**
 * The narrow interface the gateway and the client need from a TUN device (after wireguard-go's tun.Device).
 * Two implementations: LinuxTun (native addon, src/tun/linux.ts) and MemoryTun (in-memory double, src/tun/memory.ts).
 *
 * Packets are raw IP (no packet-info header). Reads arrive as batches: one Buffer holding `count` packets,
 * packet i at offset `i * stride` with length `lengths[i]`, and GSO info in meta[i * GSO_META + 0..4]. The
 * batch and its buffers are reused: they are valid only during the handler call.
 *
 * A device that reads super-packets (TSO/USO, `superPackets`) hands over TCP/UDP packets up to 64 KB that stand
 * for several real ones: meta gives their kind (GsoKind, 0 for a plain packet), the payload bytes per segment,
 * the header length and where the partial L4 checksum starts / sits. src/tun/gso.ts segments them where real
 * packets are needed; TunDevice.writeGso writes one back as a unit.
 */
export interface TunBatch {
  readonly data: Buffer;
  readonly lengths: Uint32Array;
  readonly stride: number;
  /** GSO_META entries per slot: kind, gso size, header length, csum start, csum offset (all 0: plain). */
  readonly meta: Uint16Array;
  count: number;
}

/** Entries of TunBatch.meta per packet. */
export const GSO_META = 5;

/** Super-packet kinds (native/src/gso.h); a TCP kind may carry GSO_ECN (CWR on the first segment only). */
export const GsoKind = { none: 0, tcp4: 1, tcp6: 2, udp4: 3, udp6: 4 } as const;
export const GSO_ECN = 0x80;

/** Largest super-packet: an IPv6 header plus the largest payload length. */
export const MAX_SUPER_PACKET_BYTES = 40 + 65535;

export type TunBatchHandler = (batch: TunBatch) => void;

export interface TunDevice {
  readonly name: string;
  readonly mtu: number;
  /** Start delivering batches to `handler` (one handler; a second call replaces it). */
  onBatch(handler: TunBatchHandler): void;
  /** Whether reads may deliver super-packets (TSO/USO on; see TunBatch). */
  readonly superPackets: boolean;
  /** Write one packet; returns false if the kernel refused it (e.g. queue full), which callers count as a drop. */
  write(data: Uint8Array, offset: number, length: number): boolean;
  /**
   * Write `batch.count` packets laid out like a read batch; returns how many were accepted and, when given,
   * sets status[i] to 1 (accepted) or 0 (refused). The device may coalesce flows into fewer, larger writes and
   * rewrite headers in place, so `batch` must be the caller's own staging buffer (see TunWriter).
   */
  writeBatch(batch: TunBatch, status?: Uint8Array): number;
  /**
   * Write one super-packet of `kind` (GsoKind) with `gsoSize` payload bytes per segment as a unit (the kernel
   * segments it where it must) or, where the device cannot, segmented. Returns 0 when written, EINVAL when it
   * is not a well-formed super-packet of that kind, another errno when the kernel refused it.
   */
  writeGso(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): number;
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

/**
 * An empty batch with the layout both TunDevice implementations fill (one Buffer, `maxPackets` slots; slots
 * of a super-packet reading device hold 64 KB).
 */
export function createTunBatch(mtu: number, maxPackets: number = DEFAULT_TUN_BATCH_SIZE, superPackets = false): TunBatch {
  const stride = tunStride(superPackets ? Math.max(mtu, MAX_SUPER_PACKET_BYTES) : mtu);
  return {
    data: Buffer.alloc(stride * maxPackets),
    lengths: new Uint32Array(maxPackets),
    stride,
    meta: new Uint16Array(GSO_META * maxPackets),
    count: 0,
  };
}

/**
 * Header bytes (IP + TCP/UDP) of a super-packet of `kind`, read from the packet itself; 0 when they do not
 * fit `length`. The kind's IP version is not checked here (the native writer and splitter do).
 */
export function superPacketHeaderLength(data: Uint8Array, offset: number, length: number, kind: number): number {
  const k = kind & ~GSO_ECN;
  const ip = k === GsoKind.tcp4 || k === GsoKind.udp4 ? (data[offset]! & 0x0f) * 4 : 40;
  const tcp = k === GsoKind.tcp4 || k === GsoKind.tcp6;
  if (ip + (tcp ? 20 : 8) > length) return 0;
  const header = ip + (tcp ? (data[offset + ip + 12]! >> 4) * 4 : 8);
  return header < length ? header : 0;
}

/** Segments a super-packet stands for (at least 1). */
export function superPacketSegments(length: number, headerLength: number, gsoSize: number): number {
  return Math.max(1, Math.ceil((length - headerLength) / gsoSize));
}

/** Bytes the real packets of a super-packet carry: every segment's IP length, headers included. */
export function superPacketWireBytes(length: number, headerLength: number, gsoSize: number): number {
  return length + (superPacketSegments(length, headerLength, gsoSize) - 1) * headerLength;
}

/** Packet `index` of a batch, as a view into the batch buffer (valid only during the handler call). */
export function tunPacket(batch: TunBatch, index: number): Buffer {
  const start = index * batch.stride;
  return batch.data.subarray(start, start + (batch.lengths[index] ?? 0));
}
