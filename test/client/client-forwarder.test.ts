/**
 * The client's data path with super-packets (TSO reads), over the in-memory TUN and transport: sent as one
 * unit when the connection carries them, segmented natively when it does not (as on HTTP/3), and written to
 * the TUN as one unit when received; counters count the real packets' bytes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ClientForwarder } from '../../src/client/client-forwarder.js';
import { createMemoryPair, type MemoryPair } from '../../src/transport/memory.js';
import { GsoKind } from '../../src/tun/device.js';
import { MemoryTun } from '../../src/tun/memory.js';
import { tcpSuperPacket } from '../support/packets.js';
import { until } from '../support/wait.js';

const CLIENT = '198.18.0.2';
const GATEWAY = '198.18.0.1';
const MSS = 1360;
const PAYLOAD = 30_000;
const HEADER = 40;
const SEGMENTS = Math.ceil(PAYLOAD / MSS);
const WIRE_BYTES = HEADER + PAYLOAD + (SEGMENTS - 1) * HEADER;

let pair: MemoryPair | null = null;
afterEach(() => {
  pair?.client.close({ reason: 'client_closed' });
  pair = null;
});

function setup(superPackets: boolean) {
  pair = createMemoryPair({ superPackets });
  const tun = new MemoryTun({ mtu: 1400, superPackets: true });
  const forwarder = new ClientForwarder();
  forwarder.setTun(tun);
  forwarder.setConnection(pair.client);
  const atGateway: { kind: number; gsoSize: number; bytes: Buffer }[] = [];
  pair.server.setReceiver({
    onPacket: (d, o, l) => void atGateway.push({ kind: 0, gsoSize: 0, bytes: Buffer.from(d.subarray(o, o + l)) }),
    onSuperPacket: (d, o, l, kind, gsoSize) => void atGateway.push({ kind, gsoSize, bytes: Buffer.from(d.subarray(o, o + l)) }),
    onBatchEnd() {},
  });
  return { server: pair.server, client: pair.client, tun, forwarder, atGateway };
}

describe('ClientForwarder with super-packets', () => {
  it('sends a TSO read as one unit over a connection that carries them, and counts its real packets', async () => {
    const c = setup(true);
    await until(() => c.client.carriesSuperPackets, 'framing negotiated');
    const up = tcpSuperPacket(CLIENT, GATEWAY, PAYLOAD);
    c.tun.injectSuper(up, GsoKind.tcp4, MSS, HEADER);
    await until(() => c.atGateway.length === 1, 'super-packet at the gateway');
    expect(c.atGateway[0]).toEqual({ kind: GsoKind.tcp4, gsoSize: MSS, bytes: up });
    expect(c.forwarder.counters).toMatchObject({ bytesSent: WIRE_BYTES, packetsSent: SEGMENTS });
  });

  it('segments it natively over a connection that does not (HTTP/3, an older gateway)', async () => {
    const c = setup(false);
    c.tun.injectSuper(tcpSuperPacket(CLIENT, GATEWAY, PAYLOAD), GsoKind.tcp4, MSS, HEADER);
    await until(() => c.atGateway.length === SEGMENTS, 'segments at the gateway');
    expect(c.atGateway.every((p) => p.kind === 0 && p.bytes.length <= HEADER + MSS)).toBe(true);
    expect(c.atGateway.reduce((n, p) => n + p.bytes.length, 0)).toBe(WIRE_BYTES);
    expect(c.forwarder.counters).toMatchObject({ bytesSent: WIRE_BYTES, packetsSent: SEGMENTS });
  });

  it('writes a received super-packet to the TUN as one unit; a malformed one is dropped and counted', async () => {
    const c = setup(true);
    await until(() => c.server.carriesSuperPackets, 'framing negotiated');
    const down = tcpSuperPacket(GATEWAY, CLIENT, PAYLOAD);
    c.server.sendSuperPacket(down, 0, down.length, GsoKind.tcp4, MSS);
    const truncated = down.subarray(0, 30); // a TCP header cut short
    c.server.sendSuperPacket(truncated, 0, truncated.length, GsoKind.tcp4, MSS);
    c.server.flush();
    await until(() => c.tun.writtenSuper.length === 1 && c.forwarder.counters.dropsMalformed === 1, 'TUN write and drop');
    expect(c.tun.writtenSuper[0]).toEqual({ packet: Uint8Array.from(down), kind: GsoKind.tcp4, gsoSize: MSS });
    expect(c.forwarder.counters).toMatchObject({ bytesReceived: WIRE_BYTES, packetsReceived: SEGMENTS });
  });
});
