import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isQuicgateError } from '../../src/errors.js';
import type { Session } from '../../src/gateway/session.js';
import { sessionLimits } from '../support/config-fixture.js';
import { startTestRedis, waitUntil, type TestRedis } from '../support/redis-server.js';
import { LEASE_MS, fleetConfig, passwordUsers, startTestGateway, type TestGateway } from './fleet-harness.js';

let redis: TestRedis;
let prefixSeq = 0;
const running: TestGateway[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await redis.dispose();
});
afterEach(async () => {
  for (const gw of running.splice(0)) await gw.stop().catch(() => undefined);
});

async function fleetOf(ids: readonly string[], limits: Parameters<typeof sessionLimits>[0], extra: { killTimeoutMs?: number } = {}): Promise<TestGateway[]> {
  const fleet = fleetConfig(redis.url, `qgt${++prefixSeq}:`);
  const users = await passwordUsers(['alice', 'bob', 'carol']);
  const gateways: TestGateway[] = [];
  for (const id of ids) {
    const gw = await startTestGateway(id, fleet, { limits: sessionLimits(limits), users }, extra);
    running.push(gw);
    gateways.push(gw);
  }
  return gateways;
}

const live = (gateways: readonly TestGateway[], user?: string): number =>
  gateways.reduce((n, gw) => n + (user === undefined ? gw.sessions.size : gw.sessions.sessionsOf(user).length), 0);

describe('session caps across the fleet (real redis-server)', () => {
  it('many concurrent admissions on three gateways never exceed the per-user and the total cap', async () => {
    const gws = await fleetOf(['a', 'b', 'c'], { maxSessionsPerUser: 3, maxTotalSessions: 5, atLimit: 'reject' });
    const attempts = Array.from({ length: 30 }, (_, i) => gws[i % 3]!.connect('alice'));
    const results = await Promise.all(attempts);
    expect(results.filter((r) => r.result.ok)).toHaveLength(3);
    expect(results.filter((r) => !r.result.ok).every((r) => !r.result.ok && r.result.code === 'user_limit')).toBe(true);
    expect(live(gws, 'alice')).toBe(3);

    // bob and carol fill the total of 5 (3 of alice's are in it), whatever gateway they land on.
    const others = await Promise.all(Array.from({ length: 20 }, (_, i) => gws[i % 3]!.connect(i % 2 === 0 ? 'bob' : 'carol')));
    expect(others.filter((r) => r.result.ok)).toHaveLength(2);
    expect(others.some((r) => !r.result.ok && r.result.code === 'server_limit')).toBe(true);
    expect(live(gws)).toBe(5);

    // Every end path releases: a session that ends frees its slot on every gateway.
    const one = gws.flatMap((g) => g.sessions.sessionsOf('alice'))[0]!;
    const owner = gws.find((g) => g.sessions.get(one.id) !== undefined)!;
    owner.sessions.end(one, 'client_closed');
    const again = await waitForAdmission(gws[(gws.indexOf(owner) + 1) % 3]!, 'alice');
    expect(again.result.ok).toBe(true);
    expect(live(gws, 'alice')).toBe(3);
  });

  it('replace_oldest ends the oldest session of the user on the other gateway', async () => {
    const [a, b] = await fleetOf(['a', 'b'], { maxSessionsPerUser: 2, atLimit: 'replace_oldest' });
    const first = await a!.connect('alice');
    await new Promise((r) => setTimeout(r, 5));
    const second = await b!.connect('alice');
    expect(first.session).not.toBeNull();
    expect(second.session).not.toBeNull();
    const third = await b!.connect('alice');
    expect(third.result.ok).toBe(true);
    await waitUntil(() => a!.ended.some((e) => e.id === first.session!.id), 5_000, "a ends alice's oldest session");
    expect(a!.ended).toEqual([{ id: first.session!.id, reason: 'replaced' }]);
    expect(b!.sessions.sessionsOf('alice').map((s) => s.id)).toEqual([second.session!.id, third.session!.id]);
    expect(b!.fleet.stats().replacedRemote).toBe(1);
  });

  it('concurrent replace_oldest admissions on two gateways settle at the cap, every other session replaced', async () => {
    const gws = await fleetOf(['a', 'b'], { maxSessionsPerUser: 2, atLimit: 'replace_oldest' });
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => gws[i % 2]!.connect('alice')));
    const admitted = results.filter((r) => r.session !== null).length;
    expect(admitted).toBeGreaterThanOrEqual(2);
    await waitUntil(() => live(gws, 'alice') <= 2, 5_000, "alice's sessions down to the cap");
    expect(live(gws, 'alice')).toBe(2);
    const ended = gws.flatMap((g) => g.ended);
    expect(ended).toHaveLength(admitted - 2);
    expect(ended.every((e) => e.reason === 'replaced')).toBe(true);
    // The fleet lists exactly the two left, wherever they live (the replaced ones' records are gone).
    const left = gws.flatMap((g) => g.sessions.sessionsOf('alice').map((s) => s.id)).sort();
    const listed = await gws[0]!.fleet.list(gws[0]!.sessions.list().map((s) => view(s)), null);
    expect(listed.sessions.map((s) => s.id).sort()).toEqual(left);
  });

  it("a crashed gateway's sessions stop counting within the lease; exactly one survivor reports it lost", async () => {
    const [a, b, c] = await fleetOf(['a', 'b', 'c'], { maxSessionsPerUser: 2, atLimit: 'reject' });
    const lost: string[] = [];
    a!.fleet.onGatewayLost((id) => void lost.push(`a:${id}`));
    b!.fleet.onGatewayLost((id) => void lost.push(`b:${id}`));
    expect((await c!.connect('alice')).result.ok).toBe(true);
    expect((await c!.connect('alice')).result.ok).toBe(true);
    const refused = await a!.connect('alice');
    expect(refused.result.ok).toBe(false);

    const crashedAt = Date.now();
    await c!.crash();
    running.splice(running.indexOf(c!), 1);
    const admitted = await waitForAdmission(a!, 'alice', LEASE_MS + 3_000);
    expect(admitted.result.ok).toBe(true);
    // The lease is renewed every LEASE_MS/3, so its last renewal was at most that long before the crash.
    expect(Date.now() - crashedAt).toBeLessThan(LEASE_MS + 2_000);
    await waitUntil(() => lost.length > 0, LEASE_MS * 3, 'a survivor reports c lost');
    await new Promise((r) => setTimeout(r, LEASE_MS));
    expect(lost.map((l) => l.slice(2))).toEqual(['c']);
    const list = await a!.fleet.list([], null);
    expect(list.fleet.gateways).toEqual(['a', 'b']);
  });

  it('admin kills are routed to the owning gateway; an owner that does not listen is a clear error', async () => {
    const [a, b] = await fleetOf(['a', 'b'], {}, { killTimeoutMs: 1_000 });
    const onB = (await b!.connect('alice')).session!;
    const listed = await a!.fleet.list([], null);
    expect(listed.sessions.map((s) => [s.id, s.gateway, s.user])).toEqual([[onB.id, 'b', 'alice']]);
    expect((await a!.fleet.list([], 'a')).sessions).toEqual([]);

    expect(await a!.fleet.killRemote(onB.id, 'admin_kill', 'closed by the administrator')).toEqual({ gateway: 'b' });
    expect(b!.ended).toEqual([{ id: onB.id, reason: 'admin_kill' }]);
    expect(await a!.fleet.killRemote('no-such-session', 'admin_kill', 'x')).toBeNull();

    await b!.connect('bob');
    await b!.connect('bob');
    expect(await a!.fleet.killUserRemote('bob', 'admin_kill', 'closed by the administrator')).toBe(2);

    // b stops listening (its subscriber is gone) but its lease still holds: the kill fails clearly.
    const onB2 = (await b!.connect('carol')).session!;
    await b!.redis.subscriber.unsubscribe();
    const err = await a!.fleet.killRemote(onB2.id, 'admin_kill', 'x').catch((e: unknown) => e);
    expect(isQuicgateError(err, 'QG_ERR_FLEET_UNREACHABLE')).toBe(true);
  });

  it('while Redis is down admissions use local caps; on return live sessions are registered once', async () => {
    const [a, b] = await fleetOf(['a', 'b'], { maxSessionsPerUser: 3, atLimit: 'reject' });
    const before = (await a!.connect('alice')).session!;
    await redis.stop();
    await waitUntil(() => !a!.fleet.liveness.leaseHeld && !b!.fleet.liveness.leaseHeld, 10_000, 'leases not held');
    const whileDown = [(await a!.connect('alice')).session, (await b!.connect('alice')).session];
    expect(whileDown.every((s) => s !== null)).toBe(true);
    expect(a!.fleet.stats().degraded).toBe(true);
    expect(a!.fleet.stats().localOnlyAdmissions).toBeGreaterThan(0);
    expect(a!.log.matching('session caps are local only')).toHaveLength(1);
    a!.sessions.end(before, 'client_closed');

    await redis.start();
    await waitUntil(() => a!.fleet.liveness.leaseHeld && b!.fleet.liveness.leaseHeld, 15_000, 'leases held again');
    await waitUntil(() => a!.fleet.stats().resyncs >= 2 && b!.fleet.stats().resyncs >= 2, 10_000, 'both resynced');
    // Redis restarted empty: exactly the two live sessions are registered, the one ended while down is not.
    const listed = await a!.fleet.list(a!.sessions.list().map((s) => view(s)), null);
    expect(listed.sessions.map((s) => s.id).sort()).toEqual(whileDown.map((s) => s!.id).sort());
    expect(listed.fleet.complete).toBe(true);
    // The cap of 3 now counts both: one more is admitted, the next refused.
    expect((await a!.connect('alice')).result.ok).toBe(true);
    expect((await b!.connect('alice')).result).toMatchObject({ ok: false, code: 'user_limit' });
  });
});

function view(s: Session) {
  return {
    id: s.id,
    user: s.user,
    ipv4: s.ipv4,
    ipv6: s.ipv6,
    peer: s.peer,
    transport: s.transport,
    startedAt: new Date(s.startedAt).toISOString(),
    lastActivityAt: new Date(s.startedAt).toISOString(),
    bytesIn: 0,
    bytesOut: 0,
    packetsIn: 0,
    packetsOut: 0,
    rateIn: 0,
    rateOut: 0,
  };
}

/** Retry an admission until it is admitted (a release is a fire-and-forget write). */
async function waitForAdmission(gw: TestGateway, user: string, timeoutMs = 3_000): Promise<Awaited<ReturnType<TestGateway['connect']>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const attempt = await gw.connect(user);
    if (attempt.result.ok || Date.now() > deadline) return attempt;
    await new Promise((r) => setTimeout(r, 50));
  }
}
