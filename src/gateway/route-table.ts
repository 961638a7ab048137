/**
 * Tunnel address → peer, for the per-packet path. IPv4 keys are the address as a signed 32-bit word; IPv6
 * keys are the low word with a chain compared on all four words, so a lookup reads the packet in place and
 * allocates nothing. Updated at connect and disconnect only.
 */
import { ipv6DestinationWord } from '../packet/ip.js';
import type { TunnelPeer } from './peer.js';

export class RouteTable {
  private readonly v4 = new Map<number, TunnelPeer>();
  private readonly v6 = new Map<number, TunnelPeer>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(peer: TunnelPeer): void {
    if (peer.hasV4) this.v4.set(peer.v4, peer);
    if (peer.hasV6) {
      const key = peer.v6[3]!;
      peer.nextV6 = this.v6.get(key) ?? null;
      this.v6.set(key, peer);
    }
    this.count++;
  }

  remove(peer: TunnelPeer): void {
    let removed = false;
    if (peer.hasV4 && this.v4.get(peer.v4) === peer) {
      this.v4.delete(peer.v4);
      removed = true;
    }
    if (peer.hasV6) {
      const key = peer.v6[3]!;
      let node = this.v6.get(key) ?? null;
      let prev: TunnelPeer | null = null;
      while (node !== null && node !== peer) {
        prev = node;
        node = node.nextV6;
      }
      if (node === peer) {
        if (prev === null) {
          if (peer.nextV6 === null) this.v6.delete(key);
          else this.v6.set(key, peer.nextV6);
        } else prev.nextV6 = peer.nextV6;
        peer.nextV6 = null;
        removed = true;
      }
    }
    if (removed) this.count--;
  }

  lookupV4(word: number): TunnelPeer | undefined {
    return this.v4.get(word);
  }

  /** Peer owning the IPv6 destination of the packet at `offset`. */
  lookupV6Destination(data: Uint8Array, offset: number): TunnelPeer | undefined {
    let node = this.v6.get(ipv6DestinationWord(data, offset, 3)) ?? null;
    while (node !== null) {
      const w = node.v6;
      if (
        w[0] === ipv6DestinationWord(data, offset, 0) &&
        w[1] === ipv6DestinationWord(data, offset, 1) &&
        w[2] === ipv6DestinationWord(data, offset, 2)
      ) {
        return node;
      }
      node = node.nextV6;
    }
    return undefined;
  }

  peers(): IterableIterator<TunnelPeer> {
    return new Set([...this.v4.values(), ...[...this.v6.values()].flatMap(chain)]).values();
  }
}

function chain(head: TunnelPeer): TunnelPeer[] {
  const out: TunnelPeer[] = [];
  for (let n: TunnelPeer | null = head; n !== null; n = n.nextV6) out.push(n);
  return out;
}
