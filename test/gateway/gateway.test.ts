/**
 * The end-to-end scenarios that need no kernel, over the in-memory TUN and transport, for several config
 * variants (dual stack, IPv4 only, IPv6 only): the real Gateway, SessionManager, forwarding pipelines and
 * shaping; only the TUN and the WebTransport session are doubles.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import type { ServerConfig, TunnelNetworks } from '../../src/config/types.js';
import { serverConfig, testPasswordHash, userConfig, sessionLimits } from '../support/config-fixture.js';
import { startMemoryGateway, nextControl, type MemoryGateway } from '../support/memory-gateway.js';
import { ipv4Packet, ipv6Packet } from '../support/packets.js';
import { tick, until } from '../support/wait.js';

const V4 = { cidr: '198.18.0.0/24', gateway: '198.18.0.1' };
const V6 = { cidr: '2001:db8:1::/64', gateway: '2001:db8:1::1' };
const VARIANTS: { name: string; networks: TunnelNetworks }[] = [
  { name: 'dual stack', networks: { ipv4: V4, ipv6: V6 } },
  { name: 'IPv4 only', networks: { ipv4: V4, ipv6: null } },
  { name: 'IPv6 only', networks: { ipv4: null, ipv6: V6 } },
];


let running: MemoryGateway | null = null;
afterEach(async () => {
  await running?.gateway.stop();
  running = null;
});

async function setup(overrides: Partial<ServerConfig>, clock?: FakeClock): Promise<MemoryGateway> {
  const users = [
    userConfig('alice', { passwordHash: await testPasswordHash('a'), bandwidth: 1_000_000 }),
    userConfig('bob', { passwordHash: await testPasswordHash('b') }),
  ];
  running = await startMemoryGateway(serverConfig({ users, ...overrides }), clock);
  return running;
}

async function connect(g: MemoryGateway, user: string, password: string, maxDatagramBytes?: number) {
  const result = await g.listener.connect(user, password, maxDatagramBytes === undefined ? {} : { maxDatagramBytes });
  if ('refused' in result) throw new Error(`refused: ${JSON.stringify(result.refused)}`);
  const client = result.pair.client;
  const assign = await nextControl(client, 'assign');
  const received: Buffer[] = [];
  client.setReceiver({ onPacket: (d, o, l) => void received.push(Buffer.from(d.subarray(o, o + l))), onBatchEnd() {} });
  return { client, assign, received };
}

/** A packet from `src` to the gateway, in the family of `src`. */
function packetFrom(src: string, dst: string, size = 100): Buffer {
  return src.includes(':') ? ipv6Packet(src, dst, size) : ipv4Packet(src, dst, size);
}

describe.each(VARIANTS)('gateway over in-memory parts ($name)', ({ networks }) => {
  const gw = (): string => (networks.ipv4 ? V4.gateway : V6.gateway);
  const own = (a: { ipv4: { address: string } | null; ipv6: { address: string } | null }): string =>
    (networks.ipv4 ? a.ipv4!.address : a.ipv6!.address);

  it("pushes an MTU whose full-size packet fits one of the session's datagrams (HTTP/3: 1213), IPv6 at least 1280", async () => {
    const g = await setup({ networks });
    const { client, assign, received } = await connect(g, 'bob', 'b', 1213);
    expect(assign.mtu).toBe(networks.ipv6 ? 1280 : 1211);
    // A packet of that MTU from the gateway side reaches the client whole.
    const down = packetFrom(gw(), own(assign), assign.mtu - (networks.ipv4 ? 20 : 40));
    expect(down.length).toBe(assign.mtu);
    const before = client.stats.datagramsReceived;
    g.tun.inject([down]);
    await until(() => received.length === 1, 'client receive');
    expect(received[0]).toEqual(down);
    // Whole in one datagram; IPv6's 1280 exceeds the 1211 bytes a datagram carries: two fragments.
    expect(client.stats.datagramsReceived - before).toBe(assign.mtu <= 1211 ? 1 : 2);
  });

  it('assigns addresses of the configured families and forwards both ways', async () => {
    const g = await setup({ networks });
    const { client, assign, received } = await connect(g, 'bob', 'b');
    expect(assign.ipv4 !== null).toBe(networks.ipv4 !== null);
    expect(assign.ipv6 !== null).toBe(networks.ipv6 !== null);
    expect(assign.mtu).toBe(1400);
    const up = packetFrom(own(assign), gw());
    client.sendPacket(up, 0, up.length);
    client.flush();
    await until(() => g.tun.written.length === 1, 'TUN write');
    expect(Buffer.from(g.tun.written[0]!)).toEqual(up);
    const down = packetFrom(gw(), own(assign));
    g.tun.inject([down]);
    await until(() => received.length === 1, 'client receive');
    expect(received[0]).toEqual(down);
    const session = g.gateway.sessions.list()[0]!;
    expect(session.counters).toMatchObject({ bytesIn: up.length, packetsIn: 1, bytesOut: down.length, packetsOut: 1 });
  });

  it('drops forged sources, malformed packets and unknown destinations, and counts each', async () => {
    const g = await setup({ networks });
    const { client, assign } = await connect(g, 'bob', 'b');
    const forged = packetFrom(networks.ipv4 ? '198.18.0.99' : '2001:db8:1::99', gw());
    const garbage = Buffer.from([0x45, 0, 0]);
    for (const p of [forged, garbage]) client.sendPacket(p, 0, p.length);
    client.flush();
    g.tun.inject([packetFrom(gw(), networks.ipv4 ? '198.18.0.200' : '2001:db8:1::200')]);
    await until(() => g.gateway.drops.spoofed === 1 && g.gateway.drops.malformed === 1, 'drop counters');
    expect(g.gateway.drops.no_route).toBe(1);
    expect(g.tun.written).toHaveLength(0);
    void assign;
  });

  it('keeps clients apart unless allow_client_to_client', async () => {
    for (const allow of [false, true]) {
      const g = await setup({ networks, allowClientToClient: allow });
      const a = await connect(g, 'bob', 'b');
      const b = await connect(g, 'bob', 'b');
      const p = packetFrom(own(a.assign), own(b.assign));
      a.client.sendPacket(p, 0, p.length);
      a.client.flush();
      if (allow) await until(() => g.tun.written.length === 1, 'TUN write');
      else await until(() => g.gateway.drops.client_to_client === 1, 'client_to_client drop');
      expect(g.tun.written.length).toBe(allow ? 1 : 0);
      await g.gateway.stop();
    }
  });


  it('counts a full queue by where it was full: the TUN refusing a write (tun_full), the tunnel refusing a packet (send_queue_full)', async () => {
    const g = await setup({ networks });
    const { client, assign, received } = await connect(g, 'bob', 'b');
    g.tun.refuseWrite = () => true;
    const up = packetFrom(own(assign), gw());
    client.sendPacket(up, 0, up.length);
    client.flush();
    await until(() => g.gateway.drops.tun_full === 1, 'tun_full drop');
    g.tun.refuseWrite = undefined;
    // More full-size packets in one go than the link holds in flight plus the send queue's 1024 packets.
    const down = packetFrom(gw(), own(assign), 1300);
    const batch = Array.from({ length: 64 }, () => down);
    for (let i = 0; i < 40; i++) g.tun.inject(batch);
    const refused = g.gateway.drops.send_queue_full ?? 0;
    expect(refused).toBeGreaterThan(0);
    await until(() => received.length === 40 * 64 - refused, 'the packets the tunnel took');
    expect(g.gateway.drops).toMatchObject({ queue_full: 0, store_full: 0, tun_full: 1, send_queue_full: refused });
  });
  it('answers keepalives and refreshes activity', async () => {
    const clock = new FakeClock();
    const g = await setup({ networks }, clock);
    const { client } = await connect(g, 'bob', 'b');
    const session = g.gateway.sessions.list()[0]!;
    clock.advance(5000);
    const ack = nextControl(client, 'keepalive_ack');
    client.sendControl({ type: 'keepalive', t: 42 });
    expect((await ack).t).toBe(42);
    expect(session.lastActivity).toBe(5000);
  });
});

describe('gateway session policy over in-memory parts', () => {
  it('replaces the oldest session at the per-user limit when so configured', async () => {
    const g = await setup({ limits: sessionLimits({ maxSessionsPerUser: 2, atLimit: 'replace_oldest' }) });
    const first = await connect(g, 'bob', 'b');
    await connect(g, 'bob', 'b');
    const third = await connect(g, 'bob', 'b');
    // retry false: the replaced client must not come back and replace the newer session in turn.
    expect(await first.client.closed).toMatchObject({ reason: 'replaced', retry: false });
    expect(g.gateway.sessions.list().map((s) => s.ipv4)).toContain(third.assign.ipv4!.address);
    expect(g.gateway.sessions.size).toBe(2);
  });

  it('tells the client whether to come back: not after an admin kill, yes after the idle or lifetime limit and a shutdown', async () => {
    const clock = new FakeClock();
    const g = await setup({ limits: sessionLimits({ idleTimeoutMs: 10_000, sessionTimeoutMs: 60_000 }) }, clock);
    const killed = await connect(g, 'bob', 'b');
    g.gateway.sessions.kill(g.gateway.sessions.list()[0]!.id);
    expect(await killed.client.closed).toMatchObject({ reason: 'admin_kill', retry: false });

    const idle = await connect(g, 'bob', 'b');
    clock.advance(10_000);
    g.gateway.sessions.expire();
    expect(await idle.client.closed).toMatchObject({ reason: 'idle_timeout', retry: true });

    const old = await connect(g, 'bob', 'b');
    const oldSession = g.gateway.sessions.list()[0]!;
    for (let t = 0; t < 60_000; t += 5_000) {
      clock.advance(5_000);
      g.gateway.sessions.touch(oldSession); // busy, never idle: only the lifetime ends it
      g.gateway.sessions.expire();
    }
    expect(await old.client.closed).toMatchObject({ reason: 'session_timeout', retry: true });

    const last = await connect(g, 'bob', 'b');
    await g.gateway.stop();
    expect(await last.client.closed).toMatchObject({ reason: 'server_shutdown', retry: true });
  });

  it('counts only what the client sends as a sign of life: traffic towards a vanished client does not keep it (liveness)', async () => {
    const clock = new FakeClock();
    const g = await setup({ limits: sessionLimits({ idleTimeoutMs: 10_000 }) }, clock);
    const { client, assign, received } = await connect(g, 'bob', 'b');
    const session = g.gateway.sessions.list()[0]!;
    const towards = ipv4Packet('198.18.0.1', assign.ipv4!.address, 100);
    // Something on the gateway's side keeps sending to the client; the client itself says nothing.
    for (let t = 0; t < 9_000; t += 1_000) {
      clock.advance(1_000);
      g.tun.inject([towards]);
      await until(() => received.length === t / 1_000 + 1, 'delivery to the client');
    }
    expect(session.lastActivity).toBe(0);
    clock.advance(1_000);
    g.gateway.sessions.expire();
    expect(await client.closed).toMatchObject({ reason: 'idle_timeout' });

    // A packet from the client is a sign of life.
    const again = await connect(g, 'bob', 'b');
    const live = g.gateway.sessions.list()[0]!;
    clock.advance(5_000);
    const from = ipv4Packet(again.assign.ipv4!.address, '198.18.0.1', 100);
    again.client.sendPacket(from, 0, from.length);
    again.client.flush();
    await until(() => live.lastActivity === clock.now() && live.counters.packetsIn === 1, 'inbound stamp');
  });

  it('refuses the third session with user_limit when the policy is reject', async () => {
    const g = await setup({ limits: sessionLimits({ maxSessionsPerUser: 2 }) });
    await connect(g, 'bob', 'b');
    await connect(g, 'bob', 'b');
    const third = await g.listener.connect('bob', 'b');
    expect(third).toMatchObject({ refused: { ok: false, status: 429, code: 'user_limit' } });
  });

  it('gives a reconnecting user their previous address back', async () => {
    const g = await setup({});
    const first = await connect(g, 'bob', 'b');
    const address = first.assign.ipv4!.address;
    first.client.close({ reason: 'client_closed' });
    await until(() => g.gateway.sessions.size === 0, 'session end');
    await connect(g, 'alice', 'a'); // someone else connects in between
    const again = await connect(g, 'bob', 'b');
    expect(again.assign.ipv4!.address).toBe(address);
  });
});

describe('per-user limit over in-memory parts (fake clock)', () => {
  /** Offers `offeredRate` bytes/s toward the given addresses for `seconds` of fake time. */
  async function offer(g: MemoryGateway, clock: FakeClock, targets: string[], offeredRate: number, seconds: number, interleave = true): Promise<void> {
    const stepMs = 5;
    const packetSize = 1000;
    const perStep = Math.round((offeredRate * stepMs) / 1000 / packetSize / targets.length);
    for (let t = 0; t < (seconds * 1000) / stepMs; t++) {
      // Packets of both flows interleaved in one batch, as the kernel queues them.
      const n = perStep * targets.length;
      const pick = (i: number): string => (interleave ? targets[i % targets.length]! : targets[Math.floor(i / perStep)]!);
      g.tun.inject(Array.from({ length: n }, (_, i) => ipv4Packet('198.18.0.1', pick(i), packetSize - 20)));
      clock.advance(stepMs);
      await tick();
    }
  }

  it('holds one user to the configured rate, byte-exact within one burst, and drops the excess as rate_limit', async () => {
    const clock = new FakeClock();
    const g = await setup({}, clock);
    const { assign } = await connect(g, 'alice', 'a');
    const session = g.gateway.sessions.list()[0]!;
    await offer(g, clock, [assign.ipv4!.address], 2_000_000, 10);
    const burst = session.bucket!.burst;
    expect(session.counters.bytesOut).toBeGreaterThanOrEqual(10 * 1_000_000 - 1000);
    expect(session.counters.bytesOut).toBeLessThanOrEqual(10 * 1_000_000 + burst + 1000);
    expect(g.gateway.drops.rate_limit).toBeGreaterThan(0);
  });

  it('shares one bucket between two sessions of the same user: the total, not each, is held', async () => {
    const clock = new FakeClock();
    const g = await setup({}, clock);
    const a = await connect(g, 'alice', 'a');
    const b = await connect(g, 'alice', 'a');
    const [s1, s2] = g.gateway.sessions.list();
    expect(s1!.bucket).toBe(s2!.bucket);
    await offer(g, clock, [a.assign.ipv4!.address, b.assign.ipv4!.address], 4_000_000, 10);
    const total = s1!.counters.bytesOut + s2!.counters.bytesOut;
    expect(total).toBeGreaterThanOrEqual(10 * 1_000_000 - 2000);
    expect(total).toBeLessThanOrEqual(10 * 1_000_000 + s1!.bucket!.burst + 2000);
    expect(Math.min(s1!.counters.bytesOut, s2!.counters.bytesOut)).toBeGreaterThan(3_000_000);
  });

  it("gives each session of the user a share when one session's packets always arrive first", async () => {
    const clock = new FakeClock();
    const g = await setup({}, clock);
    const a = await connect(g, 'alice', 'a');
    const b = await connect(g, 'alice', 'a');
    const [s1, s2] = g.gateway.sessions.list();
    await offer(g, clock, [a.assign.ipv4!.address, b.assign.ipv4!.address], 4_000_000, 10, false);
    const total = s1!.counters.bytesOut + s2!.counters.bytesOut;
    expect(total).toBeLessThanOrEqual(10 * 1_000_000 + s1!.bucket!.burst + 2000);
    expect(Math.min(s1!.counters.bytesOut, s2!.counters.bytesOut)).toBeGreaterThan(0.3 * total);
  });

  it('applies a reload that changes the limit to the live bucket at once', async () => {
    const clock = new FakeClock();
    const g = await setup({}, clock);
    const { assign } = await connect(g, 'alice', 'a');
    const session = g.gateway.sessions.list()[0]!;
    const bucket = session.bucket!;
    const current = g.gateway.currentConfig;
    g.gateway.reload({ ...current, users: current.users.map((u) => (u.name === 'alice' ? { ...u, bandwidth: 250_000 } : u)) });
    expect(session.bucket).toBe(bucket);
    expect(bucket.rate).toBe(250_000);
    const before = session.counters.bytesOut;
    await offer(g, clock, [assign.ipv4!.address], 1_000_000, 8);
    const sent = session.counters.bytesOut - before;
    expect(sent).toBeGreaterThanOrEqual(8 * 250_000 - 1000);
    expect(sent).toBeLessThanOrEqual(8 * 250_000 + bucket.burst + 1000);
  });
});

