/**
 * bench/fleet-rate.ts - how exactly a fleet holds one user's shared rate, and what a lease round costs.
 *
 *   sudo npx tsx bench/fleet-rate.ts                  (both parts; `npm run build` first for the gateways)
 *   PARTS=round npx tsx bench/fleet-rate.ts           (the lease round only; no root needed)
 *   LIMIT_MBIT=20 SECONDS=30 sudo -E npx tsx bench/fleet-rate.ts
 *
 * Parts and what they print:
 *   round      the rate-lease script (src/fleet/rate-script.ts) against a real redis-server on loopback, as one
 *              gateway of two renewing N users per round (N = 1, 100, 1000, 10000; ROUNDS rounds each): wall
 *              time per round (median, p95; one pipelined round trip), the gateway's CPU per round, Redis's CPU
 *              per round (INFO cpu), beside a bare PING's round trip
 *   accuracy   (root) three real gateways in namespaces against one redis-server (test/e2e/helpers/fleet.ts),
 *              alice (LIMIT_MBIT) with a client on 1, 2 and 3 of them at once, four TCP streams of iperf3 each
 *              for SECONDS: her total through all of them over the steady part of the run, read from the gateways'
 *              own counters (IP bytes both ways, what her bucket charges), as a ratio of her limit
 */
import { Redis } from 'ioredis';
import { leaseRound, type LeaseRequest } from '../src/fleet/rate-script.js';
import { Fleet, stopFleet } from '../test/e2e/helpers/fleet.js';
import type { QuicgateProcess, TestUser } from '../test/e2e/helpers/quicgate.js';
import { startTestRedis } from '../test/support/redis-server.js';

const PARTS = (process.env.PARTS ?? 'round accuracy').split(/[ ,]+/);
const ROUNDS = Number(process.env.ROUNDS ?? 50);
const LIMIT_MBIT = Number(process.env.LIMIT_MBIT ?? 10);
const SECONDS = Number(process.env.SECONDS ?? 20);

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string): number => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}

async function benchRound(): Promise<void> {
  const server = await startTestRedis();
  const redis = new Redis(server.url, { lazyConnect: true });
  try {
    await redis.connect();
    const pings: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      await redis.ping();
      pings.push(performance.now() - t);
    }
    pings.sort((a, b) => a - b);
    console.log(`round: PING round trip median ${quantile(pings, 0.5).toFixed(3)} ms, p95 ${quantile(pings, 0.95).toFixed(3)} ms (loopback)`);
    for (const users of [1, 100, 1000, 10_000]) {
      const requests = (demand: number): LeaseRequest[] =>
        Array.from({ length: users }, (_, i) => ({ key: `qgb:rate:u${i}`, limit: 1_250_000, demand: demand * (1 + (i % 7) / 10) }));
      // The other gateway holds leases for the same users, so every round splits between two.
      await leaseRound(redis, 'gw2', 5_000, 60_000, requests(600_000));
      await leaseRound(redis, 'gw1', 5_000, 60_000, requests(600_000)); // warm-up: script loaded, keys exist
      const walls: number[] = [];
      const cpu0 = process.cpuUsage();
      const redis0 = await redisCpuSeconds(redis);
      for (let r = 0; r < ROUNDS; r++) {
        const reqs = requests(500_000 + (r % 5) * 50_000);
        const t = performance.now();
        await leaseRound(redis, 'gw1', 5_000, 60_000, reqs);
        walls.push(performance.now() - t);
      }
      const cpu = process.cpuUsage(cpu0);
      const redisCpu = (await redisCpuSeconds(redis)) - redis0;
      walls.sort((a, b) => a - b);
      const gwMs = (cpu.user + cpu.system) / 1000 / ROUNDS;
      console.log(
        `round: ${String(users).padStart(5)} users: wall median ${quantile(walls, 0.5).toFixed(2)} ms, p95 ${quantile(walls, 0.95).toFixed(2)} ms; ` +
          `gateway CPU ${gwMs.toFixed(2)} ms/round (${((gwMs * 1000) / users).toFixed(1)} µs/user); ` +
          `Redis CPU ${((redisCpu * 1000) / ROUNDS).toFixed(2)} ms/round (${((redisCpu * 1e6) / ROUNDS / users).toFixed(1)} µs/user)`,
      );
    }
  } finally {
    redis.disconnect();
    await server.dispose();
  }
}

async function benchAccuracy(): Promise<void> {
  const alice: TestUser = { name: 'alice', password: 'alice-pw', bandwidth: `${LIMIT_MBIT} Mbit/s` };
  let fleet: Fleet | undefined;
  const clients: (QuicgateProcess | null)[] = [null, null, null];
  try {
    fleet = await Fleet.start({ gateways: 3, clients: 3, users: [alice], fleetYaml: 'lease_interval: 100ms' });
    for (const n of [1, 2, 3]) {
      for (let i = 0; i < 3; i++) {
        if (i < n && clients[i] === null) {
          const client = fleet.startClient(i, i, `alice-gw${i + 1}`, alice, { transport: 'h2' });
          await client.waitForMsg('tunnel up');
          clients[i] = client;
        }
      }
      const which = [0, 1, 2].slice(0, n);
      const m = await fleet.measureRate('alice', which, SECONDS);
      console.log(
        `accuracy: ${n} gateway${n > 1 ? 's' : ''}: total/limit ${(m.total / LIMIT_MBIT).toFixed(3)} ` +
          `(${m.wire.map((x) => x.toFixed(2)).join(' + ')} = ${m.total.toFixed(2)} of ${LIMIT_MBIT} Mbit/s; iperf3 goodput ${m.goodput.reduce((a, b) => a + b, 0).toFixed(2)})`,
      );
    }
  } finally {
    await stopFleet(fleet);
  }
}

if (PARTS.includes('round')) await benchRound();
if (PARTS.includes('accuracy')) {
  if (process.getuid?.() !== 0) console.log('accuracy: skipped (needs root: network namespaces)');
  else await benchAccuracy();
}
