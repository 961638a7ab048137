/**
 * Fleet-wide tunnel addresses against a real redis-server: several FleetAddressBooks (each with its own pool and
 * Redis connection) stand for the gateways of one fleet sharing one tunnel network.
 */
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { isQuicgateError } from '../../src/errors.js';
import { FleetAddressBook, cursorStartFor } from '../../src/fleet/addresses.js';
import { FleetRedis } from '../../src/fleet/redis.js';
import { AddressPool, type Allocation, type StaticUser } from '../../src/gateway/pool.js';
import { seededRandom } from '../support/seeded-random.js';
import { startTestRedis, waitUntil, type TestRedis } from '../support/redis-server.js';

const logger = pino({ level: process.env.QG_TEST_LOG ?? 'silent' });
const NETWORKS = {
  ipv4: { cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
  ipv6: { cidr: '2001:db8:1::/64', gateway: '2001:db8:1::1' },
};
const STATIC_USER: StaticUser = { name: 'stan', staticAddresses: ['198.18.0.200', '2001:db8:1::200'] };

interface TestGateway {
  readonly id: string;
  readonly redis: FleetRedis;
  readonly pool: AddressPool;
  readonly book: FleetAddressBook;
  readonly sessions: Map<string, Allocation>;
  readonly conflicts: string[];
}

let redis: TestRedis;
let prefixCount = 0;
let live: TestGateway[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis.dispose();
});
afterEach(async () => {
  for (const gw of live) await stopGateway(gw);
  live = [];
});

async function startGateways(n: number, options: { leaseMs?: number; reserve?: number; users?: readonly StaticUser[]; sameCursor?: boolean } = {}): Promise<TestGateway[]> {
  const prefix = `qgt${++prefixCount}:`;
  const out: TestGateway[] = [];
  for (let i = 1; i <= n; i++) {
    const id = `gw${i}`;
    const fleetRedis = new FleetRedis({ redisUrl: redis.url, keyPrefix: prefix }, { maxRetryDelayMs: 100 });
    await fleetRedis.connect();
    const pool = new AddressPool({ networks: NETWORKS, users: options.users ?? [STATIC_USER] }, { rememberUsers: 0, cursorStart: options.sameCursor === true ? 0 : cursorStartFor(id) });
    const book = new FleetAddressBook({
      redis: fleetRedis, pool, gatewayId: id, leaseMs: options.leaseMs ?? 3_000, reserve: options.reserve ?? 4, clock: systemClock, logger,
      random: seededRandom(20261207 + i), // the same draws on every run
    });
    const gw: TestGateway = { id, redis: fleetRedis, pool, book, sessions: new Map(), conflicts: [] };
    book.start((sessionId) => gw.conflicts.push(sessionId));
    await book.maintain();
    out.push(gw);
    live.push(gw);
  }
  return out;
}

async function stopGateway(gw: TestGateway): Promise<void> {
  for (const [id, allocation] of gw.sessions) gw.book.release({ id, user: 'x', ...allocation });
  gw.sessions.clear();
  await gw.book.stop();
  await gw.redis.close();
}

let sessionCounter = 0;

/** What Gateway.accept does: prepare (claim), stage, the session manager's allocate, unstage. */
async function connect(gw: TestGateway, user: string | StaticUser, hints: readonly string[] = []): Promise<{ id: string; allocation: Allocation }> {
  const u = typeof user === 'string' ? { name: user, staticAddresses: [] } : user;
  const ticket = await gw.book.prepare(u, hints);
  gw.book.stage(ticket);
  try {
    const id = `s${++sessionCounter}`;
    const allocation = gw.book.allocate(u.name, hints, id);
    gw.sessions.set(id, allocation);
    return { id, allocation };
  } finally {
    gw.book.unstage();
  }
}

function disconnect(gw: TestGateway, id: string, user: string): void {
  const allocation = gw.sessions.get(id)!;
  gw.sessions.delete(id);
  gw.book.release({ id, user, ...allocation });
}

function allHeld(gateways: readonly TestGateway[]): string[] {
  return gateways.flatMap((gw) => [...gw.sessions.values()].flatMap((a) => [a.ipv4!, a.ipv6!]));
}

function expectUnique(gateways: readonly TestGateway[]): void {
  const held = allHeld(gateways);
  expect(new Set(held).size).toBe(held.length);
}

describe('FleetAddressBook (real redis-server)', () => {
  it('never hands out one address twice under concurrent claims from three gateways (fixed-seed property)', async () => {
    // All cursors start at the same place, so the gateways' first picks collide and Redis has to arbitrate.
    const gateways = await startGateways(3, { reserve: 2, sameCursor: true });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ gateway: fc.nat({ max: 2 }), user: fc.nat({ max: 30 }), leave: fc.boolean() }), { minLength: 10, maxLength: 40 }),
        async (steps) => {
          // Every step's connects of one batch run at once: the claims race in Redis.
          await Promise.all(steps.map((step) => connect(gateways[step.gateway]!, `u${step.user}`)));
          expectUnique(gateways);
          for (const [i, step] of steps.entries()) {
            if (!step.leave) continue;
            const gw = gateways[step.gateway]!;
            const first = gw.sessions.keys().next();
            if (!first.done) disconnect(gw, first.value, `u${i}`);
          }
          expectUnique(gateways);
          for (const gw of gateways) for (const id of [...gw.sessions.keys()]) disconnect(gw, id, 'any');
        },
      ),
      { numRuns: 15 },
    );
    // Racing claims did meet in Redis (the property above is not vacuous) and none became a duplicate.
    const stats = gateways.map((gw) => gw.book.stats());
    expect(stats.reduce((n, s) => n + s.claims, 0)).toBeGreaterThan(100);
    expect(stats.reduce((n, s) => n + s.conflicts, 0)).toBeGreaterThan(0);
    for (const gw of gateways) expect(gw.conflicts).toEqual([]);
  });

  it('gives a user the same address when they reconnect through another gateway (sticky fleet-wide)', async () => {
    const [a, b] = await startGateways(2);
    const first = await connect(a!, 'alice');
    disconnect(a!, first.id, 'alice');
    await a!.book.releasesAnswered();
    const again = await connect(b!, 'alice');
    expect(again.allocation).toEqual(first.allocation);
    // And bob on A meanwhile does not get alice's address.
    const bob = await connect(a!, 'bob');
    expect(bob.allocation.ipv4).not.toBe(first.allocation.ipv4);
  });

  it('gives a static address on whatever gateway, once at a time', async () => {
    const [a, b] = await startGateways(2);
    const onA = await connect(a!, STATIC_USER);
    expect(onA.allocation).toEqual({ ipv4: '198.18.0.200', ipv6: '2001:db8:1::200' });
    const second = await connect(b!, STATIC_USER);
    expect(second.allocation.ipv4).not.toBe('198.18.0.200');
    disconnect(a!, onA.id, 'stan');
    disconnect(b!, second.id, 'stan');
    // A's release of the static address goes to Redis after disconnect returns (CI18: B's claim came first).
    await Promise.all([a!.book.releasesAnswered(), b!.book.releasesAnswered()]);
    const onB = await connect(b!, STATIC_USER);
    expect(onB.allocation).toEqual({ ipv4: '198.18.0.200', ipv6: '2001:db8:1::200' });
  });

  it("frees a crashed gateway's addresses after the lease, and not before", async () => {
    const leaseMs = 1_500;
    const [a, b] = await startGateways(2, { leaseMs });
    const held = await connect(a!, 'carol');
    // Gateway A dies: no release, no renewal.
    await a!.book.stop().catch(() => undefined);
    a!.redis.commands.disconnect(false);
    live = live.filter((gw) => gw !== a);
    const hint = [held.allocation.ipv4!, held.allocation.ipv6!];
    const early = await connect(b!, 'dave', hint);
    expect(early.allocation.ipv4).not.toBe(held.allocation.ipv4);
    await new Promise((r) => setTimeout(r, leaseMs + 500));
    await b!.book.maintain(); // forgets the foreign mark
    await new Promise((r) => setTimeout(r, leaseMs / 3 + 100));
    await b!.book.maintain();
    const late = await connect(b!, 'erin', hint);
    expect(late.allocation).toEqual(held.allocation);
  });

  it('while Redis is down hands out only reserve pairs (disjoint across gateways), refuses when they run out, and reconverges', async () => {
    const [a, b] = await startGateways(2, { reserve: 3, leaseMs: 3_000 });
    const before = [await connect(a!, 'u1'), await connect(b!, 'u2')];
    expectUnique([a!, b!]);
    expect(a!.book.stats().reserveSize).toBe(3);
    await redis.stop();
    await waitUntil(() => a!.redis.state === 'down' && b!.redis.state === 'down', 10_000, 'both links down');
    for (let i = 0; i < 3; i++) {
      await connect(a!, `ra${i}`);
      await connect(b!, `rb${i}`);
    }
    expectUnique([a!, b!]);
    expect(a!.book.stats().fallbacks).toBe(3);
    const refused = await connect(a!, 'one-too-many').catch((err: unknown) => err);
    expect(isQuicgateError(refused, 'QG_ERR_POOL_EXHAUSTED')).toBe(true);

    // Redis comes back empty (no persistence): every gateway re-asserts what it holds; new claims wait it out.
    await redis.start();
    await waitUntil(() => a!.redis.state === 'up' && b!.redis.state === 'up', 15_000, 'both links up');
    await a!.book.maintain();
    await b!.book.maintain();
    // Settling: new claims wait until every gateway had a renewal round; A's reserve is spent, so it refuses.
    const settling = await connect(a!, 'u3').catch((err: unknown) => err);
    expect(isQuicgateError(settling, 'QG_ERR_POOL_EXHAUSTED')).toBe(true);
    const settled = Date.now() + 2_000 + 2_000 + 200;
    await waitUntil(() => Date.now() > settled, 10_000, 'settle window over');
    await a!.book.maintain();
    await b!.book.maintain();
    expect(a!.book.stats().reserveSize).toBe(3);
    const after = await connect(a!, 'u3');
    expect(after.allocation.ipv4).not.toBeNull();
    // The re-asserted claims hold: B cannot take A's addresses, even asked for them.
    const fromB = await connect(b!, 'u4', [before[0]!.allocation.ipv4!, before[0]!.allocation.ipv6!]);
    expect(fromB.allocation.ipv4).not.toBe(before[0]!.allocation.ipv4);
    expectUnique([a!, b!]);
    expect(a!.conflicts).toEqual([]);
    expect(b!.conflicts).toEqual([]);
  });
});
