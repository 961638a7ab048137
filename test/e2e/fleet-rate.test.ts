/**
 * A user's rate shared across a fleet, for real: three gateways in namespaces against one redis-server
 * (helpers/fleet.ts), alice's clients on different gateways at once, iperf3 through each (HTTP/2 tunnels).
 * alice's limit is 10 Mbit/s; fallback_share 0.4 (so the degraded rate, 2 × 4, is told apart from the shared one).
 *
 *   qge-…-s   services 192.0.2.250 (redis)
 *   qge-…-g1..g3  gw1..gw3 192.0.2.1-3, tunnels 198.18.1-3.1
 *   qge-…-c1..c3  alice's clients 192.0.2.11-13, client i on gateway i
 *
 * Goals (issue 11): two or three gateways together move 0.95–1.05 of the limit, one alone ≥ 0.95; a limit
 * changed on one gateway holds on every gateway within 2 s; Redis stopped mid-traffic: forwarding goes on at
 * the fallback share; Redis back: the shared limit again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet, ratesMbit, stopFleet, type RateMeasurement } from './helpers/fleet.js';
import type { IperfResult, QuicgateProcess, TestUser } from './helpers/quicgate.js';

const LIMIT_MBIT = 10;
const ALICE: TestUser = { name: 'alice', password: 'alice-pw', bandwidth: `${LIMIT_MBIT} Mbit/s` };
const FALLBACK = 0.4;

describe('fleet: a user rate shared through Redis (three gateways, HTTP/2)', () => {
  let fleet: Fleet | undefined;
  const clients: (QuicgateProcess | null)[] = [null, null, null];

  async function connect(i: number): Promise<void> {
    const client = fleet!.startClient(i, i, `alice-gw${i + 1}`, ALICE, { transport: 'h2' });
    clients[i] = client;
    await client.waitForMsg('tunnel up');
  }

  async function disconnect(i: number): Promise<void> {
    const client = clients[i];
    clients[i] = null;
    if (client === null || client === undefined) return;
    client.signal('SIGTERM');
    await client.exited;
  }

  const iperfThrough = (which: readonly number[], seconds: number): Promise<IperfResult[]> => fleet!.iperfFromGateways(which, seconds);
  const measure = (which: readonly number[], seconds: number): Promise<RateMeasurement> => fleet!.measureRate('alice', which, seconds);
  const show = (m: RateMeasurement): string =>
    `${m.wire.map((x) => x.toFixed(2)).join(' + ')} = ${m.total.toFixed(2)} Mbit/s of ${LIMIT_MBIT} (iperf3 goodput ${m.goodput.map((x) => x.toFixed(2)).join(' + ')})`;

  beforeAll(async () => {
    fleet = await Fleet.start({ gateways: 3, clients: 3, users: [ALICE], fleetYaml: `lease_interval: 100ms\nfallback_share: ${FALLBACK}` });
    await Promise.all([connect(0), connect(1)]);
  }, 120_000);

  afterAll(() => stopFleet(fleet));

  it('alice on two gateways at once is held to her limit in total (0.95-1.05)', async () => {
    const m = await measure([0, 1], 24);
    console.log(`two gateways: ${show(m)}`);
    expect(m.total / LIMIT_MBIT).toBeGreaterThanOrEqual(0.95);
    expect(m.total / LIMIT_MBIT).toBeLessThanOrEqual(1.05);
    // Both gateways carry a real part of it (the shares follow demand; both demand the whole limit).
    for (const x of m.wire) expect(x / LIMIT_MBIT).toBeGreaterThan(0.3);
  });

  it('alice on three gateways at once is held to her limit in total (0.95-1.05)', async () => {
    await connect(2);
    try {
      const m = await measure([0, 1, 2], 24);
      console.log(`three gateways: ${show(m)}`);
      expect(m.total / LIMIT_MBIT).toBeGreaterThanOrEqual(0.95);
      expect(m.total / LIMIT_MBIT).toBeLessThanOrEqual(1.05);
    } finally {
      await disconnect(2);
    }
  });

  it('alice on one gateway alone reaches at least 0.95 of her limit (and not more than 1.05)', async () => {
    await disconnect(1);
    try {
      const m = await measure([0], 18);
      console.log(`one gateway: ${show(m)}`);
      expect(m.total / LIMIT_MBIT).toBeGreaterThanOrEqual(0.95);
      expect(m.total / LIMIT_MBIT).toBeLessThanOrEqual(1.05);
    } finally {
      await connect(1);
    }
  });

  it('a limit changed on gw1 alone holds on both gateways within 2 s', async () => {
    const f = fleet!;
    const start = Date.now();
    const at = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms - (Date.now() - start))));
    const traffic = iperfThrough([0, 1], 18);
    await at(3_400);
    const s0 = await f.sampleUser('alice', [0, 1]);
    await at(7_000);
    const s1 = await f.sampleUser('alice', [0, 1]);
    // gw1 (only) reloads alice at 5 Mbit/s; gw2's config still says 10.
    await f.writeUsers([{ ...ALICE, bandwidth: `${LIMIT_MBIT / 2} Mbit/s` }], [0]);
    const changed = Date.now();
    try {
      await f.reload(0);
      await at(changed - start + 2_000);
      const s2 = await f.sampleUser('alice', [0, 1]);
      await at(16_000);
      const s3 = await f.sampleUser('alice', [0, 1]);
      await traffic;
      const before = ratesMbit(s0, s1).reduce((a, b) => a + b, 0);
      const after = ratesMbit(s2, s3);
      const total = after.reduce((a, b) => a + b, 0);
      console.log(`limit change: ${before.toFixed(2)} Mbit/s before; from 2 s after: ${after.map((x) => x.toFixed(2)).join(' + ')} = ${total.toFixed(2)} (new limit ${LIMIT_MBIT / 2})`);
      // Before: only that the old limit was in force (the new one is half of it); the two-gateway case above
      // holds the limit itself to ±5 %.
      expect(before / LIMIT_MBIT).toBeGreaterThanOrEqual(0.9);
      expect(total / (LIMIT_MBIT / 2)).toBeGreaterThanOrEqual(0.95);
      expect(total / (LIMIT_MBIT / 2)).toBeLessThanOrEqual(1.05);
    } finally {
      await f.writeUsers([ALICE], [0]);
      await f.reload(0);
    }
  });

  it('Redis stopped mid-traffic: forwarding goes on at the fallback share; started again: the shared limit', async () => {
    const f = fleet!;
    const start = Date.now();
    const at = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms - (Date.now() - start))));
    const traffic = iperfThrough([0, 1], 36);
    await at(4_000);
    await f.redis.stop();
    await Promise.all([0, 1].map((i) => f.proc(i).waitFor((l) => l.msg.startsWith('fleet rate leases failing'), 5_000)));
    await at(7_000);
    const s0 = await f.sampleUser('alice', [0, 1]);
    await at(15_000);
    const s1 = await f.sampleUser('alice', [0, 1]);
    await f.redis.start();
    await Promise.all([0, 1].map((i) => f.proc(i).waitFor((l) => l.msg.startsWith('fleet rate leases restored'), 10_000)));
    await at(22_000);
    const s2 = await f.sampleUser('alice', [0, 1]);
    await at(33_000);
    const s3 = await f.sampleUser('alice', [0, 1]);
    const runs = await traffic;
    const degraded = ratesMbit(s0, s1);
    const recovered = ratesMbit(s2, s3);
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    const stalls = runs.flatMap((r) => r.intervals.filter((i) => i.bps === 0));
    console.log(
      `Redis down: ${degraded.map((x) => x.toFixed(2)).join(' + ')} = ${sum(degraded).toFixed(2)} Mbit/s (fallback ${FALLBACK} of ${LIMIT_MBIT} on each); ` +
        `back: ${recovered.map((x) => x.toFixed(2)).join(' + ')} = ${sum(recovered).toFixed(2)}`,
    );
    expect(stalls).toEqual([]);
    // Each gateway alone holds its fallback share: never above it; below it only by what TCP through a small
    // shaper at 3-4 Mbit/s loses on a busy CPU (0.91-1.00 of it measured).
    for (const x of degraded) {
      expect(x / (FALLBACK * LIMIT_MBIT)).toBeGreaterThanOrEqual(0.85);
      expect(x / (FALLBACK * LIMIT_MBIT)).toBeLessThanOrEqual(1.05);
    }
    expect(sum(recovered) / LIMIT_MBIT).toBeGreaterThanOrEqual(0.95);
    expect(sum(recovered) / LIMIT_MBIT).toBeLessThanOrEqual(1.05);
    const metrics = await f.metrics(0);
    expect(metrics).toMatch(/^quicgate_fleet_link_up 1$/m);
    expect(metrics).toMatch(/^quicgate_fleet_lease_rounds_total\{outcome="failed"\} [1-9]/m);
    const status = await f.admin(1, 'GET', '/api/fleet');
    expect(status.body).toMatchObject({ enabled: true, gatewayId: 'gw2', link: 'up', rate: { state: 'shared' } });
  });
});
