/**
 * Fuzzing the gateway's inbound pipeline as a whole: a real Gateway (SessionManager, Forwarder, InboundReceiver)
 * over the in-memory TUN and transport, fed random packets and random raw datagrams by an authenticated
 * client. Every item the client sends ends up exactly once either written to the TUN or in one of the gateway's
 * drop counters (`gateway.drops` = forwarder.drops), in the category an independent model predicts; nothing
 * throws; the session and the gateway keep working for good traffic afterwards. Control-stream garbage and
 * keepalive floods do not end or stall the session.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DROP_REASONS } from '../../src/gateway/drops.js';
import { ipv4ToWord, ipv6ToBytes } from '../../src/packet/ip.js';
import type { AssignControl, ControlMessage } from '../../src/transport/control.js';
import { DatagramDecoder } from '../../src/transport/framing.js';
import type { MemoryPair } from '../../src/transport/memory.js';
import type { TunnelConnection } from '../../src/transport/types.js';
import { serverConfig, testPasswordHash, userConfig } from '../support/config-fixture.js';
import { nextControl, startMemoryGateway, type MemoryGateway } from '../support/memory-gateway.js';
import { ipv4PacketWith, ipv6PacketWith } from '../support/packets.js';
import { tick, until } from '../support/wait.js';


interface Connected {
  pair: MemoryPair;
  client: TunnelConnection;
  assign: AssignControl;
  controls: ControlMessage[];
}

let g: MemoryGateway;
let alice: Connected;
let bob: Connected;

async function connect(user: string, password: string): Promise<Connected> {
  const result = await g.listener.connect(user, password, { sourceAddress: `192.0.2.${user === 'alice' ? 11 : 12}` });
  if ('refused' in result) throw new Error('refused');
  const client = result.pair.client;
  const assign = await nextControl(client, 'assign');
  const controls: ControlMessage[] = [];
  client.setControlHandler((m) => controls.push(m));
  return { pair: result.pair, client, assign, controls };
}

beforeAll(async () => {
  const users = [
    userConfig('alice', { passwordHash: await testPasswordHash('a') }),
    userConfig('bob', { passwordHash: await testPasswordHash('b') }),
  ];
  g = await startMemoryGateway(serverConfig({ users, allowClientToClient: false }));
  alice = await connect('alice', 'a');
  bob = await connect('bob', 'b');
});

afterAll(async () => {
  await g?.gateway.stop();
});

type Outcome = 'written' | (typeof DROP_REASONS)[number];

function snapshot(): Record<Outcome, number> {
  const drops = g.gateway.drops as Record<string, number>;
  const out = { written: g.tun.written.length } as Record<Outcome, number>;
  for (const r of DROP_REASONS) out[r] = drops[r] ?? 0;
  return out;
}

function delta(before: Record<Outcome, number>): Record<Outcome, number> {
  const now = snapshot();
  const out = {} as Record<Outcome, number>;
  for (const k of Object.keys(now) as Outcome[]) out[k] = now[k] - before[k];
  return out;
}

function total(counts: Record<Outcome, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** The model: what the gateway must do with one packet from alice (unlimited user, no client-to-client). */
function classify(p: Uint8Array): Outcome {
  const a4 = ipv4ToWord(alice.assign.ipv4!.address);
  const a6 = Buffer.from(ipv6ToBytes(alice.assign.ipv6!.address));
  const clients4 = [a4, ipv4ToWord(bob.assign.ipv4!.address)];
  const clients6 = [a6, Buffer.from(ipv6ToBytes(bob.assign.ipv6!.address))];
  const b = Buffer.from(p);
  if (b.length < 1) return 'malformed';
  const version = b[0]! >> 4;
  if (version === 4) {
    const ihl = (b[0]! & 15) * 4;
    if (b.length < 20 || ihl < 20 || ihl > b.length || b.readUInt16BE(2) < ihl || b.readUInt16BE(2) > b.length) return 'malformed';
    if (b.readInt32BE(12) !== a4) return 'spoofed';
    return clients4.includes(b.readInt32BE(16)) ? 'client_to_client' : 'written';
  }
  if (version === 6) {
    if (b.length < 40 || 40 + b.readUInt16BE(4) > b.length) return 'malformed';
    if (!b.subarray(8, 24).equals(a6)) return 'spoofed';
    return clients6.some((c) => c.equals(b.subarray(24, 40))) ? 'client_to_client' : 'written';
  }
  return 'malformed';
}

const anyV4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
const anyV6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((x) => x.map((n) => n.toString(16)).join(':'));
const payload = fc.uint8Array({ maxLength: 1400 });

/** Packets from alice's client: honest, forged, to other clients, broken in every way the model knows. */
const hostilePacket: fc.Arbitrary<Buffer> = fc.oneof(
  payload.map((p) => ipv4PacketWith(alice.assign.ipv4!.address, '198.18.0.1', p)),
  fc.tuple(payload, fc.nat(10)).map(([p, o]) => ipv4PacketWith(alice.assign.ipv4!.address, '203.0.113.9', p, o)),
  payload.map((p) => ipv6PacketWith(alice.assign.ipv6!.address, '2001:db8:1::1', p)),
  fc.tuple(anyV4, anyV4, payload).map(([s, d, p]) => ipv4PacketWith(s, d, p)),
  fc.tuple(anyV6, anyV6, payload).map(([s, d, p]) => ipv6PacketWith(s, d, p)),
  payload.map((p) => ipv4PacketWith(alice.assign.ipv4!.address, bob.assign.ipv4!.address, p)),
  payload.map((p) => ipv6PacketWith(alice.assign.ipv6!.address, bob.assign.ipv6!.address, p)),
  payload.map((p) => ipv4PacketWith(bob.assign.ipv4!.address, '198.18.0.1', p)),
  fc.tuple(payload, fc.nat()).map(([p, cut]) => {
    const full = ipv4PacketWith(alice.assign.ipv4!.address, '198.18.0.1', p);
    return full.subarray(0, 1 + (cut % full.length));
  }),
  fc.tuple(payload, fc.nat(), fc.nat(255)).map(([p, at, value]) => {
    const b = ipv6PacketWith(alice.assign.ipv6!.address, '2001:db8:1::1', p);
    b[at % Math.min(b.length, 8)] = value; // version, length fields
    return b;
  }),
  fc.uint8Array({ minLength: 1, maxLength: 1500 }).map((b) => Buffer.from(b)),
);

describe('gateway inbound pipeline under fuzz', () => {
  it('accounts for every packet exactly once: written to the TUN or dropped in the predicted category', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(hostilePacket, { minLength: 1, maxLength: 60 }), async (packets) => {
        const before = snapshot();
        const expected = { written: 0 } as Record<Outcome, number>;
        for (const r of DROP_REASONS) expected[r] = 0;
        for (const p of packets) {
          expected[classify(p)]++;
          expect(alice.client.sendPacket(p, 0, p.length)).toBe(true);
        }
        alice.client.flush();
        await until(() => total(delta(before)) >= packets.length, 'all packets accounted for');
        await tick();
        expect(delta(before)).toEqual(expected);
        // What reached the TUN is byte-exact what was sent.
        const written = g.tun.written.slice(before.written).map((w) => Buffer.from(w).toString('hex'));
        expect(written).toEqual(packets.filter((p) => classify(p) === 'written').map((p) => p.toString('hex')));
        g.tun.written.length = 0;
      }),
      { numRuns: 150 },
    );
    expect(g.gateway.sessions.size).toBe(2);
  });

  it('counts every malformed raw datagram in drops.malformed and classifies the packets of well-formed ones', async () => {
    const oracle = new DatagramDecoder();
    const datagram = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 600 }),
      // Coalesced records whose lengths may lie.
      fc.array(fc.tuple(hostilePacket, fc.integer({ min: -2, max: 2 })), { minLength: 1, maxLength: 4 }).map((records) =>
        Buffer.concat(
          records.map(([p, lie]) => {
            const h = Buffer.alloc(2);
            h.writeUInt16BE(Math.max(0, Math.min(0x7fff, p.length + (lie === 0 || lie === 1 ? 0 : lie))));
            return Buffer.concat([h, p.subarray(0, 0x7fff)]);
          }),
        ),
      ),
    );
    let malformedDatagrams = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(datagram, { minLength: 1, maxLength: 20 }), async (datagrams) => {
        const before = snapshot();
        const expected = { written: 0 } as Record<Outcome, number>;
        for (const r of DROP_REASONS) expected[r] = 0;
        for (const d of datagrams) {
          const buffer = Buffer.from(d);
          const ok = oracle.decode(buffer, 0, buffer.length, { onPacket: (data, o, l) => void expected[classify(data.subarray(o, o + l))]++ });
          if (!ok) {
            expected.malformed++;
            malformedDatagrams++;
          }
          alice.pair.injectDatagram('server', buffer);
        }
        const want = total(expected);
        await until(() => total(delta(before)) >= want, 'all datagrams accounted for');
        await tick();
        expect(delta(before)).toEqual(expected);
        g.tun.written.length = 0;
      }),
      { numRuns: 150 },
    );
    expect(malformedDatagrams).toBeGreaterThan(0);
    expect(g.gateway.sessions.size).toBe(2);
  });

  it('survives random control-stream bytes and a keepalive flood, and still forwards good packets', async () => {
    const sessionsBefore = g.gateway.sessions.size;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 10 }), async (chunks) => {
        for (const c of chunks) {
          // A newline-free '#' line can never be a valid `close`, so the session must stay.
          const safe = Buffer.from(c).map((x) => (x === 0x7b ? 0x23 : x)); // no '{': no JSON object at all
          alice.pair.injectControlBytes('server', safe);
        }
        alice.pair.injectControlBytes('server', Buffer.from('\n'));
        await tick();
      }),
      { numRuns: 100 },
    );
    const acksBefore = alice.controls.filter((m) => m.type === 'keepalive_ack').length;
    const sessionBefore = g.gateway.sessions.list().find((s) => s.user === 'alice')!;
    const activityBefore = sessionBefore.lastActivity;
    await new Promise((r) => setTimeout(r, 5));
    const flood = '{"type":"keepalive","t":1}\n'.repeat(5000);
    alice.pair.injectControlBytes('server', Buffer.from(flood));
    await tick();
    await tick();
    // Every keepalive counts as activity, but the flood buys at most one ack per quarter keepalive interval
    // (found by test/e2e/hostile.test.ts: an ack per line let one client slow down everyone else).
    expect(sessionBefore.lastActivity).toBeGreaterThan(activityBefore);
    expect(alice.controls.filter((m) => m.type === 'keepalive_ack').length - acksBefore).toBeLessThanOrEqual(1);
    // Gateway-to-client messages sent by a client are ignored, not obeyed.
    alice.pair.injectControlBytes('server', Buffer.from(`${JSON.stringify({ ...alice.assign, sessionId: 'forged' })}\n{"type":"keepalive_ack","t":3}\n`));
    await tick();
    await tick();
    expect(g.gateway.sessions.size).toBe(sessionsBefore);
    const before = snapshot();
    const good = ipv4PacketWith(alice.assign.ipv4!.address, '198.18.0.1', new Uint8Array(100));
    alice.client.sendPacket(good, 0, good.length);
    alice.client.flush();
    await until(() => delta(before).written === 1, 'a good packet after the abuse');
    expect(alice.pair.server.stats.malformed).toBeGreaterThan(0);
  });
});
