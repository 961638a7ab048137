/**
 * Software segmentation of super-packets (native/src/gso.h) for the places that need real packets: HTTP/3
 * (each segment must fit a datagram), a peer that cannot take super-packets, a user whose bucket shapes
 * packet by packet.
 *
 *   split(data, offset, length, kind, gsoSize) ──► addon gsoSplit ──► segments in one reused batch
 *                                                                      (valid until the next split)
 *
 * Per super-packet: one native call, no allocation.
 */
import { createTunBatch } from './device.js';
import type { TunBatch } from './device.js';
import { loadTunAddon, type NativeTunAddon } from './native.js';

/** Segments one super-packet may make (native kMaxGsoSegments). */
export const MAX_GSO_SEGMENTS = 256;

export class GsoSplitter {
  private addon: NativeTunAddon | undefined;
  private scratch: TunBatch | undefined;

  /**
   * `mtu`: the largest segment expected (header + gso size); larger ones are refused (-2). The scratch batch
   * (MAX_GSO_SEGMENTS slots) is made with the first split: one splitter can be shared by every session.
   */
  constructor(private readonly mtu: number) {}

  /** Where split() puts the segments (count set by split). */
  get batch(): TunBatch {
    return (this.scratch ??= createTunBatch(this.mtu, MAX_GSO_SEGMENTS));
  }

  /**
   * Segments into `batch`; returns the count, -1 when it is not a well-formed super-packet of `kind`, -2 when
   * its segments are larger than the MTU given at construction.
   */
  split(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): number {
    this.addon ??= loadTunAddon();
    const batch = this.batch;
    const count = this.addon.gsoSplit(data, offset, length, kind, gsoSize, batch.data, batch.stride, batch.lengths);
    batch.count = count > 0 ? count : 0;
    return count;
  }
}
