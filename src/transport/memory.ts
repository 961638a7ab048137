/**
 * An in-memory TunnelConnection pair for unit tests of the gateway and the client: the same coalescing,
 * bounded queue, control channel and close protocol as the WebTransport connection, over a simulated link.
 *
 * Flow: sendPacket -> SendQueue -> MemoryLink (at most `linkDatagrams` in flight, like a socket buffer) ->
 * delivered to the peer on a later macrotask (setImmediate), in order with control lines -> peer decodes.
 */
import type { CloseControl } from './control.js';
import { ConnectionBase } from './connection-base.js';
import { H2_MAX_DATAGRAM_BYTES } from './framing.js';
import type { DatagramWire } from './send-queue.js';
import type { TunnelConnection } from './types.js';

export interface MemoryPairOptions {
  readonly sendQueuePackets?: number;
  readonly maxDatagramBytes?: number;
  /** Datagrams in flight per direction before the sender must wait (simulated socket buffer). */
  readonly linkDatagrams?: number;
  readonly clientPeer?: string;
  readonly serverPeer?: string;
  /** Both sides announce framing version 2 and carry super-packets (like the HTTP/2 path); default false. */
  readonly superPackets?: boolean;
}

export interface MemoryPair {
  readonly client: TunnelConnection;
  readonly server: TunnelConnection;
  /** Deliver raw bytes as a datagram to one side (for hostile-input tests). */
  injectDatagram(to: 'client' | 'server', bytes: Uint8Array): void;
  /** Deliver raw control-stream bytes to one side. */
  injectControlBytes(to: 'client' | 'server', bytes: Uint8Array): void;
  /** Change one side's datagram limit mid-session (as a QUIC path MTU change does). */
  setMaxDatagramBytes(side: 'client' | 'server', bytes: number): void;
  /** Cut the link without close messages: both sides end with `connection_lost`. */
  breakLink(): void;
}

type LinkEvent =
  | { readonly type: 'datagram'; readonly data: Buffer }
  | { readonly type: 'injected'; readonly data: Buffer }
  | { readonly type: 'control'; readonly data: Uint8Array }
  | { readonly type: 'end' };

const textEncoder = new TextEncoder();

/** One direction of the simulated link. */
class MemoryLink implements DatagramWire {
  private events: LinkEvent[] = [];
  private scheduled = false;
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private cut = false;
  target: MemoryConnection | undefined;

  constructor(private readonly capacity: number) {}

  canWrite(): boolean {
    return !this.cut && this.inFlight < this.capacity;
  }

  write(datagram: Buffer): void {
    if (this.cut) return;
    this.inFlight++;
    this.push({ type: 'datagram', data: datagram });
  }

  waitWritable(onWritable: () => void): void {
    this.waiters.push(onWritable);
  }

  push(event: LinkEvent): void {
    if (this.cut) return;
    this.events.push(event);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.deliver());
    }
  }

  breakNow(): void {
    this.cut = true;
    this.events = [];
    this.waiters = [];
  }

  private deliver(): void {
    this.scheduled = false;
    const events = this.events;
    this.events = [];
    for (const event of events) {
      if (this.cut) return;
      if (event.type === 'datagram') this.inFlight--;
      this.target?.onLinkEvent(event);
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }
}

class MemoryConnection extends ConnectionBase {
  constructor(
    private readonly outgoing: MemoryLink,
    peer: string,
    sendQueuePackets: number,
    maxDatagramBytes: number,
    superPackets: boolean,
    role: 'client' | 'server',
  ) {
    super({ kind: 'memory', peer, sendQueuePackets, maxDatagramBytes, superPackets }, outgoing);
    if (role === 'client') this.announceFraming();
  }

  onLinkEvent(event: LinkEvent): void {
    if (event.type === 'datagram' || event.type === 'injected') this.receiveDatagram(event.data, 0, event.data.length);
    else if (event.type === 'control') this.receiveControlBytes(event.data);
    else this.transportEnded({ reason: 'connection_lost' });
  }

  setMaxDatagramBytes(bytes: number): void {
    this.sendQueue.setMaxDatagramBytes(bytes);
  }

  lost(): void {
    this.transportEnded({ reason: 'connection_lost', message: 'link broken' });
  }

  protected writeControlLine(line: string): void {
    this.outgoing.push({ type: 'control', data: textEncoder.encode(line) });
  }

  protected shutdown(_message: CloseControl): void {
    this.outgoing.push({ type: 'end' });
  }

  protected dispose(): void {}
}

export function createMemoryPair(options: MemoryPairOptions = {}): MemoryPair {
  const queue = options.sendQueuePackets ?? 1024;
  const maxDatagram = options.maxDatagramBytes ?? H2_MAX_DATAGRAM_BYTES;
  const capacity = options.linkDatagrams ?? 64;
  const toServer = new MemoryLink(capacity);
  const toClient = new MemoryLink(capacity);
  const superPackets = options.superPackets ?? false;
  const client = new MemoryConnection(toServer, options.serverPeer ?? '192.0.2.1:443', queue, maxDatagram, superPackets, 'client');
  const server = new MemoryConnection(toClient, options.clientPeer ?? '192.0.2.2:50000', queue, maxDatagram, superPackets, 'server');
  toServer.target = server;
  toClient.target = client;
  const side = (to: 'client' | 'server'): MemoryLink => (to === 'client' ? toClient : toServer);
  return {
    client,
    server,
    injectDatagram(to, bytes) {
      side(to).push({ type: 'injected', data: Buffer.from(bytes) });
    },
    injectControlBytes(to, bytes) {
      side(to).push({ type: 'control', data: bytes });
    },
    setMaxDatagramBytes(to, bytes) {
      (to === 'client' ? client : server).setMaxDatagramBytes(bytes);
    },
    breakLink() {
      toServer.breakNow();
      toClient.breakNow();
      client.lost();
      server.lost();
    },
  };
}
