/**
 * Super-packets (TSO reads, framing version 2) through the real gateway over the in-memory TUN and transport:
 * carried as one unit for a user without a bucket when the peer announced framing 2, segmented natively for a
 * user with a bucket (charged by the real packets' bytes, headers included) and for a peer that did not
 * announce it; the source check applies to them like to any packet.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { GsoKind } from '../../src/tun/device.js';
import { serverConfig, testPasswordHash, userConfig } from '../support/config-fixture.js';
import { nextControl, startMemoryGateway, type MemoryGateway } from '../support/memory-gateway.js';
import { tcpSuperPacket } from '../support/packets.js';
import { tick, until } from '../support/wait.js';

const GATEWAY = '198.18.0.1';
const MSS = 1360;
const PAYLOAD = 20_000;
const HEADER = 40;
const SEGMENTS = Math.ceil(PAYLOAD / MSS);
const WIRE_BYTES = HEADER + PAYLOAD + (SEGMENTS - 1) * HEADER;

let running: MemoryGateway | null = null;
afterEach(async () => {
  await running?.gateway.stop();
  running = null;
});

async function setup(links: boolean, clock?: FakeClock): Promise<MemoryGateway> {
  const users = [
    userConfig('alice', { passwordHash: await testPasswordHash('a'), bandwidth: 1_000_000 }),
    userConfig('bob', { passwordHash: await testPasswordHash('b') }),
  ];
  running = await startMemoryGateway(serverConfig({ users, networks: { ipv4: { cidr: '198.18.0.0/24', gateway: GATEWAY }, ipv6: null } }), clock, { tun: true, links });
  return running;
}

async function connect(g: MemoryGateway, user: string, password: string) {
  const result = await g.listener.connect(user, password);
  if ('refused' in result) throw new Error(`refused: ${JSON.stringify(result.refused)}`);
  const client = result.pair.client;
  const assign = await nextControl(client, 'assign');
  const packets: Buffer[] = [];
  const supers: { packet: Buffer; kind: number; gsoSize: number }[] = [];
  client.setReceiver({
    onPacket: (d, o, l) => void packets.push(Buffer.from(d.subarray(o, o + l))),
    onSuperPacket: (d, o, l, kind, gsoSize) => void supers.push({ packet: Buffer.from(d.subarray(o, o + l)), kind, gsoSize }),
    onBatchEnd() {},
  });
  return { client, address: assign.ipv4!.address, packets, supers };
}

describe('super-packets through the gateway', () => {
  it('carries one to an unlimited user as one unit once the client announced framing 2, counting its real packets', async () => {
    const g = await setup(true);
    const c = await connect(g, 'bob', 'b');
    await until(() => c.client.carriesSuperPackets, 'framing negotiated');
    const down = tcpSuperPacket(GATEWAY, c.address, PAYLOAD);
    g.tun.injectSuper(down, GsoKind.tcp4, MSS, HEADER);
    await until(() => c.supers.length === 1, 'super-packet at the client');
    expect(c.supers[0]).toEqual({ packet: down, kind: GsoKind.tcp4, gsoSize: MSS });
    expect(c.packets).toEqual([]);
    const session = g.gateway.sessions.list()[0]!;
    expect(session.counters).toMatchObject({ bytesOut: WIRE_BYTES, packetsOut: SEGMENTS });
  });

  it('writes an unlimited user\'s super-packet to the TUN as one unit, counting its real packets', async () => {
    const g = await setup(true);
    const c = await connect(g, 'bob', 'b');
    await until(() => c.client.carriesSuperPackets, 'framing negotiated');
    const up = tcpSuperPacket(c.address, GATEWAY, PAYLOAD);
    expect(c.client.sendSuperPacket(up, 0, up.length, GsoKind.tcp4, MSS)).toBe(true);
    c.client.flush();
    await until(() => g.tun.writtenSuper.length === 1, 'TUN super write');
    expect(g.tun.writtenSuper[0]).toEqual({ packet: Uint8Array.from(up), kind: GsoKind.tcp4, gsoSize: MSS });
    expect(g.gateway.sessions.list()[0]!.counters).toMatchObject({ bytesIn: WIRE_BYTES, packetsIn: SEGMENTS });
  });

  it('segments for a user with a bucket: real packets, the bucket charged their bytes with headers', async () => {
    const clock = new FakeClock();
    const g = await setup(true, clock);
    const c = await connect(g, 'alice', 'a');
    await until(() => c.client.carriesSuperPackets, 'framing negotiated');
    const session = g.gateway.sessions.list()[0]!;
    const bucket = session.bucket!;
    const before = bucket.available(clock.now());
    g.tun.injectSuper(tcpSuperPacket(GATEWAY, c.address, PAYLOAD), GsoKind.tcp4, MSS, HEADER);
    await until(() => c.packets.length === SEGMENTS, 'segments at the client');
    expect(c.supers).toEqual([]);
    expect(c.packets.reduce((n, p) => n + p.length, 0)).toBe(WIRE_BYTES);
    expect(Math.max(...c.packets.map((p) => p.length))).toBe(HEADER + MSS);
    expect(before - bucket.available(clock.now())).toBe(WIRE_BYTES);
    expect(session.counters).toMatchObject({ bytesOut: WIRE_BYTES, packetsOut: SEGMENTS });

    const up = tcpSuperPacket(c.address, GATEWAY, PAYLOAD);
    c.client.sendSuperPacket(up, 0, up.length, GsoKind.tcp4, MSS);
    c.client.flush();
    clock.advance(1000);
    await until(() => g.tun.written.length === SEGMENTS, 'segments at the TUN');
    expect(g.tun.writtenSuper).toEqual([]);
    expect(session.counters).toMatchObject({ bytesIn: WIRE_BYTES, packetsIn: SEGMENTS });
  });

  it('segments for a peer that never announced framing 2', async () => {
    const g = await setup(false);
    const c = await connect(g, 'bob', 'b');
    await tick();
    expect(c.client.carriesSuperPackets).toBe(false);
    g.tun.injectSuper(tcpSuperPacket(GATEWAY, c.address, PAYLOAD), GsoKind.tcp4, MSS, HEADER);
    await until(() => c.packets.length === SEGMENTS, 'segments at the client');
    expect(c.supers).toEqual([]);
  });

  it('drops a forged source and a super-packet that does not parse, and counts each', async () => {
    const g = await setup(true);
    const c = await connect(g, 'alice', 'a');
    await until(() => c.client.carriesSuperPackets, 'framing negotiated');
    const forged = tcpSuperPacket('198.18.0.99', GATEWAY, PAYLOAD);
    c.client.sendSuperPacket(forged, 0, forged.length, GsoKind.tcp4, MSS);
    // A TCP/IPv4 packet framed as TCP/IPv6: the native splitter refuses it.
    const wrongKind = tcpSuperPacket(c.address, GATEWAY, PAYLOAD);
    c.client.sendSuperPacket(wrongKind, 0, wrongKind.length, GsoKind.tcp6, MSS);
    c.client.flush();
    await until(() => g.gateway.drops.spoofed === 1 && g.gateway.drops.malformed === 1, 'drops counted');
    expect(g.tun.written.length + g.tun.writtenSuper.length).toBe(0);
  });
});
