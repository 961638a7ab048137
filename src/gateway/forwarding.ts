/**
 * The data plane of the gateway: one TUN, a route table of live peers, and the two pipelines
 * (outbound.ts: TUN → tunnel, inbound.ts: tunnel → TUN). attach()/detach() run at connect and disconnect;
 * everything per packet happens inside the pipelines.
 */
import type { Clock } from '../clock.js';
import type { TunDevice } from '../tun/device.js';
import { GsoSplitter } from '../tun/gso.js';
import { TunWriter } from '../tun/writer.js';
import { newDropCounters, type DropCounters } from './drops.js';
import { InboundReceiver, type InboundOptions } from './inbound.js';
import { OutboundPipeline } from './outbound.js';
import { TunnelPeer } from './peer.js';
import { RouteTable } from './route-table.js';
import type { Session } from './session.js';

export interface ForwarderOptions {
  readonly tun: TunDevice;
  readonly clock: Clock;
  readonly shapingDelayMs: number;
  readonly allowClientToClient: boolean;
}

export class Forwarder {
  readonly drops: DropCounters = newDropCounters();
  readonly routes = new RouteTable();
  private readonly peers = new Map<string, TunnelPeer>();
  private readonly outbound: OutboundPipeline;
  private readonly writer: TunWriter;
  /** Shared by every session's receiver, so a reload's allow_client_to_client reaches them all at once. */
  private readonly inbound: { -readonly [K in keyof InboundOptions]: InboundOptions[K] };
  private readonly splitter: GsoSplitter;

  constructor(private readonly options: ForwarderOptions) {
    this.splitter = new GsoSplitter(options.tun.mtu);
    this.outbound = new OutboundPipeline(this.routes, this.drops, options.clock, options.shapingDelayMs, this.splitter);
    options.tun.onBatch(this.outbound.handleBatch);
    this.writer = new TunWriter(options.tun);
    this.inbound = {
      clock: options.clock,
      writer: this.writer,
      routes: this.routes,
      drops: this.drops,
      shapingDelayMs: options.shapingDelayMs,
      allowClientToClient: options.allowClientToClient,
      splitter: this.splitter,
    };
  }

  /** Live policy change (reload): applies to every session's next packet. */
  setAllowClientToClient(allow: boolean): void {
    this.inbound.allowClientToClient = allow;
  }

  get peerCount(): number {
    return this.peers.size;
  }

  /** Route the session's addresses to it and start taking its packets. */
  attach(session: Session): TunnelPeer {
    const peer = new TunnelPeer(session);
    this.peers.set(session.id, peer);
    this.routes.add(peer);
    session.connection.setReceiver(new InboundReceiver(peer, this.inbound));
    return peer;
  }

  /** Unroute and drop queued packets; a no-op for unknown sessions. */
  detach(session: Session): void {
    const peer = this.peers.get(session.id);
    if (peer === undefined) return;
    this.peers.delete(session.id);
    this.routes.remove(peer);
    peer.close();
    session.connection.setReceiver(DISCARD);
  }

  /** Packets waiting in shaping queues, over all peers (for metrics). */
  shapedPending(): number {
    let n = 0;
    for (const peer of this.peers.values()) n += peer.outboundPending + peer.inboundPending;
    return n;
  }
}

const DISCARD = { onPacket() {}, onSuperPacket() {}, onBatchEnd() {} };
