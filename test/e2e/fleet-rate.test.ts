/**
 * A user's rate shared across a fleet, for real: three gateways in namespaces against one redis-server
 * (helpers/fleet.ts), alice's clients on different gateways at once, iperf3 through each (HTTP/2 tunnels).
 * alice's limit is 10 Mbit/s; fallback_share 0.3 (so the degraded rate is told apart from the shared one).
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
import { Fleet, stopFleet } from './helpers/fleet.js';
import { mbit, type IperfResult, type QuicgateProcess, type TestUser } from './helpers/quicgate.js';

const LIMIT_MBIT = 10;
const ALICE: TestUser = { name: 'alice', password: 'alice-pw', bandwidth: `${LIMIT_MBIT} Mbit/s` };
const FALLBACK = 0.3;

/** Mean rate (Mbit/s) of an iperf3 run over [from, to) seconds of its own clock, from its intervals. */
function windowMbit(result: IperfResult, from: number, to: number): number {
  const inside = result.intervals.filter((i) => i.start >= from - 1e-6 && i.end <= to + 1e-6);
  if (inside.length === 0) throw new Error(`no iperf3 interval inside [${from}, ${to})`);
  const seconds = inside.reduce((s, i) => s + (i.end - i.start), 0);
  return mbit(inside.reduce((s, i) => s + i.bps * (i.end - i.start), 0) / seconds);
}

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

  /** iperf3 -R (gateway to client, measured by the receiving client) through gateways `which` at once. */
  function iperfThrough(which: readonly number[], seconds: number, extra: readonly string[] = []): Promise<IperfResult[]> {
    return Promise.all(which.map((i) => fleet!.iperf(i, i, 5201, ['-R', '-t', String(seconds), '-i', '0.5', ...extra])));
  }

  beforeAll(async () => {
    fleet = await Fleet.start({ gateways: 3, clients: 3, users: [ALICE], fleetYaml: `lease_interval: 100ms\nfallback_share: ${FALLBACK}` });
    await Promise.all([connect(0), connect(1)]);
  }, 120_000);

  afterAll(() => stopFleet(fleet));

  it('alice on two gateways at once is held to her limit in total (0.95-1.05)', async () => {
    const runs = await iperfThrough([0, 1], 20, ['-O', '2']);
    const total = mbit(runs[0]!.receivedBps + runs[1]!.receivedBps);
    console.log(`two gateways: ${runs.map((r) => mbit(r.receivedBps).toFixed(2)).join(' + ')} = ${total.toFixed(2)} Mbit/s of ${LIMIT_MBIT}`);
    expect(total / LIMIT_MBIT).toBeGreaterThanOrEqual(0.95);
    expect(total / LIMIT_MBIT).toBeLessThanOrEqual(1.05);
    // Both gateways carry a real part of it (the shares follow demand; both demand the whole limit).
    for (const r of runs) expect(mbit(r.receivedBps) / LIMIT_MBIT).toBeGreaterThan(0.3);
  });

  it('alice on three gateways at once is held to her limit in total (0.95-1.05)', async () => {
    await connect(2);
    try {
      const runs = await iperfThrough([0, 1, 2], 20, ['-O', '2']);
      const total = mbit(runs.reduce((s, r) => s + r.receivedBps, 0));
      console.log(`three gateways: ${runs.map((r) => mbit(r.receivedBps).toFixed(2)).join(' + ')} = ${total.toFixed(2)} Mbit/s of ${LIMIT_MBIT}`);
      expect(total / LIMIT_MBIT).toBeGreaterThanOrEqual(0.95);
      expect(total / LIMIT_MBIT).toBeLessThanOrEqual(1.05);
    } finally {
      await disconnect(2);
    }
  });

  it('alice on one gateway alone reaches at least 0.95 of her limit (and not more than 1.05)', async () => {
    await disconnect(1);
    try {
      const [run] = await iperfThrough([0], 15, ['-O', '2']);
      const alone = mbit(run!.receivedBps);
      console.log(`one gateway: ${alone.toFixed(2)} Mbit/s of ${LIMIT_MBIT}`);
      expect(alone / LIMIT_MBIT).toBeGreaterThanOrEqual(0.95);
      expect(alone / LIMIT_MBIT).toBeLessThanOrEqual(1.05);
    } finally {
      await connect(1);
    }
  });

  it('a limit changed on gw1 alone holds on both gateways within 2 s', async () => {
    const f = fleet!;
    const traffic = iperfThrough([0, 1], 16);
    // 5 s at 10 Mbit/s, then gw1 (only) reloads alice at 5 Mbit/s; gw2's config still says 10.
    await new Promise((r) => setTimeout(r, 5_400));
    await f.writeUsers([{ ...ALICE, bandwidth: `${LIMIT_MBIT / 2} Mbit/s` }], [0]);
    const changedAt = Date.now();
    await f.reload(0);
    const runs = await traffic;
    try {
      // iperf3's clock starts ~0.4 s after ours (its server's start-up pause): the change is near t = 5.
      const change = 5 + (Date.now() - changedAt > 0 ? 0.5 : 0);
      const before = windowMbit(runs[0]!, 1, 5) + windowMbit(runs[1]!, 1, 5);
      const after = windowMbit(runs[0]!, change + 2, 16) + windowMbit(runs[1]!, change + 2, 16);
      console.log(`limit change: ${before.toFixed(2)} Mbit/s before, ${after.toFixed(2)} from 2 s after (new limit ${LIMIT_MBIT / 2})`);
      expect(before / LIMIT_MBIT).toBeGreaterThan(0.9);
      expect(after / (LIMIT_MBIT / 2)).toBeGreaterThanOrEqual(0.95);
      expect(after / (LIMIT_MBIT / 2)).toBeLessThanOrEqual(1.05);
    } finally {
      await f.writeUsers([ALICE], [0]);
      await f.reload(0);
    }
  });

  it('Redis stopped mid-traffic: forwarding goes on at the fallback share; started again: the shared limit', async () => {
    const f = fleet!;
    const traffic = iperfThrough([0, 1], 30);
    await new Promise((r) => setTimeout(r, 4_400));
    await f.redis.stop();
    const downAt = Date.now();
    await Promise.all([0, 1].map((i) => f.proc(i).waitForMsg('fleet rate leases failing', 5_000)));
    await new Promise((r) => setTimeout(r, 12_000 - (Date.now() - downAt)));
    await f.redis.start();
    await Promise.all([0, 1].map((i) => f.proc(i).waitForMsg('fleet rate leases restored', 10_000)));
    const runs = await traffic;
    // Down from t ≈ 4 to 16: fallback from 6 to 16 (detection and TCP settling); shared again from 20 on.
    const degraded = windowMbit(runs[0]!, 6, 16) + windowMbit(runs[1]!, 6, 16);
    const recovered = windowMbit(runs[0]!, 20, 30) + windowMbit(runs[1]!, 20, 30);
    const stalls = runs.flatMap((r) => r.intervals.filter((i) => i.bps === 0));
    console.log(`Redis down: ${degraded.toFixed(2)} Mbit/s (fallback ${FALLBACK} × 2 gateways = ${(2 * FALLBACK * LIMIT_MBIT).toFixed(1)}); back: ${recovered.toFixed(2)}`);
    expect(stalls).toEqual([]);
    expect(degraded / (2 * FALLBACK * LIMIT_MBIT)).toBeGreaterThanOrEqual(0.9);
    expect(degraded / (2 * FALLBACK * LIMIT_MBIT)).toBeLessThanOrEqual(1.1);
    expect(recovered / LIMIT_MBIT).toBeGreaterThanOrEqual(0.95);
    expect(recovered / LIMIT_MBIT).toBeLessThanOrEqual(1.05);
    const metrics = await f.metrics(0);
    expect(metrics).toMatch(/^quicgate_fleet_link_up 1$/m);
    expect(metrics).toMatch(/^quicgate_fleet_lease_rounds_total\{outcome="failed"\} [1-9]/m);
    const status = await f.admin(1, 'GET', '/api/fleet');
    expect(status.body).toMatchObject({ enabled: true, gatewayId: 'gw2', link: 'up', rate: { state: 'shared' } });
  });
});
