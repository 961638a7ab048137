/**
 * A fleet's history in one PostgreSQL (docs/fleet.md): three real gateways in namespaces of their own against one
 * real redis-server and one real PostgreSQL (helpers/fleet.ts, `postgres: true`; history.backend postgres on all
 * three), real clients through real tunnels.
 *
 *   alice on gw1 and gw2 (a cap of 2 across the fleet): both rows open in PostgreSQL, each with its gateway;
 *     a third session, on gw3, is refused (user_limit)
 *   gw2 SIGKILLed: within the lease time its session stops counting (the waiting client on gw3 is admitted),
 *     and one surviving gateway closes gw2's open row with end reason `crash`, at its last flushed time; seen in
 *     PostgreSQL and through gw1's admin API (?gateway=gw2); gw1's own row stays open
 *   the stats and history endpoints answer for the fleet from any gateway (every gateway's rows, ?gateway= for
 *     one), and say which of their figures are the fleet's
 *
 * Runs as root; fails (never skips) when it cannot.
 */
import { pgSessionRows, type PgSessionRow } from './helpers/history-rows.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet, stopFleet } from './helpers/fleet.js';
import type { QuicgateProcess, TestUser } from './helpers/quicgate.js';

const ALICE: TestUser = { name: 'alice', password: 'alice-pw', bandwidth: '50 Mbit/s' };
const LEASE_MS = 3_000;

interface PastSessions {
  readonly available: boolean;
  readonly sessions: readonly { id: string; user: string; status: string; endReason: string | null; gateway: string }[];
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('fleet: one history in PostgreSQL, a crashed gateway closed as crash', () => {
  let fleet: Fleet | undefined;
  const clients: QuicgateProcess[] = [];

  beforeAll(async () => {
    fleet = await Fleet.start({
      gateways: 3,
      clients: 3,
      users: [ALICE],
      postgres: true,
      serverYaml: 'limits: { max_sessions_per_user: 2, at_limit: reject }',
      fleetYaml: `session_lease: ${LEASE_MS / 1000}s`,
    });
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) if (c.running) c.signal('SIGKILL');
    await stopFleet(fleet);
  });

  const rows = (): Promise<PgSessionRow[]> => pgSessionRows(fleet!.postgres!.url('quicgate'));
  const client = (gateway: number, clientIndex: number, key: string): QuicgateProcess => {
    const c = fleet!.startClient(gateway, clientIndex, key, ALICE);
    clients.push(c);
    return c;
  };
  const ping = (gateway: number, clientIndex: number) =>
    fleet!.topo.exec(fleet!.topo.clients[clientIndex]!, 'ping', ['-c', '5', '-i', '0.2', '-W', '5', fleet!.gateway(gateway).tunnel4]);
  const admin = async <T>(index: number, path: string): Promise<T> => {
    const answer = await fleet!.admin(index, 'GET', path);
    expect(answer.status, `${fleet!.gateway(index).id} ${path}`).toBe(200);
    return answer.body as T;
  };

  it("a SIGKILLed gateway's sessions stop counting within the lease and a survivor closes its rows as crash", async () => {
    const f = fleet!;
    const onGw1 = client(0, 0, 'alice-gw1');
    await onGw1.waitForMsg('tunnel up');
    const onGw2 = client(1, 1, 'alice-gw2');
    await onGw2.waitForMsg('tunnel up');
    await Promise.all([ping(0, 0), ping(1, 1)]);

    // Both rows in the one database, each with its gateway, with bytes flushed.
    const open = await until('the open rows of gw1 and gw2 in PostgreSQL', 20_000, async () => {
      const r = (await rows()).filter((x) => x.status === 'open' && Number(x.bytes_in) > 0);
      return r.length === 2 ? r : null;
    });
    expect(open.map((r) => [r.user, r.gateway_id]).sort()).toEqual([
      ['alice', 'gw1'],
      ['alice', 'gw2'],
    ]);
    const gw1Row = open.find((r) => r.gateway_id === 'gw1')!;
    const gw2Row = open.find((r) => r.gateway_id === 'gw2')!;

    // At the cap of 2: a client on gw3 is refused and keeps retrying (300 ms..2 s backoff).
    const gw3 = f.proc(2);
    const from = gw3.lines.length;
    const waiting = client(2, 2, 'alice-gw3-waiting');
    await gw3.waitFor((l) => l.msg === 'session refused' && l.user === 'alice' && l.reason === 'user_limit', 20_000, from);

    const closedFrom = [f.proc(0).lines.length, gw3.lines.length];
    const killedAt = Date.now();
    await f.stopGateway(1, 'SIGKILL');
    expect((await rows()).find((r) => r.id === gw2Row.id)?.status).toBe('open'); // nobody closed it: the process died

    // (a) gw2's session stops counting under the cap within the lease: the waiting client is admitted on gw3.
    await waiting.waitForMsg('tunnel up', LEASE_MS + 10_000);
    // The lease was renewed at most a third of it before the kill; the client's backoff adds up to 2 s.
    expect(Date.now() - killedAt).toBeLessThan(LEASE_MS + 2_000 + 3_000);

    // (b) a survivor closes gw2's open row as crash, at its last flushed time (not when the loss was noticed).
    const closed = await until("gw2's row closed in PostgreSQL", LEASE_MS * 3 + 15_000, async () => {
      const r = (await rows()).find((x) => x.id === gw2Row.id);
      return r?.status === 'closed' ? r : null;
    });
    expect(closed).toMatchObject({ gateway_id: 'gw2', close_reason: 'crash' });
    expect(Number(closed.ended_at)).toBeGreaterThanOrEqual(Number(closed.started_at));
    expect(Number(closed.ended_at)).toBeLessThanOrEqual(killedAt);
    expect((await rows()).find((r) => r.id === gw1Row.id)?.status).toBe('open');

    // Exactly one survivor did it, and said so.
    const closedLines = (p: QuicgateProcess, start: number) =>
      p.lines.slice(start).filter((l) => l.msg === "fleet: lost gateway's open history sessions closed as crash" && l.gateway === 'gw2');
    await new Promise((r) => setTimeout(r, LEASE_MS));
    const reports = [...closedLines(f.proc(0), closedFrom[0]!), ...closedLines(gw3, closedFrom[1]!)];
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ closed: 1 });

    // gw1's admin API shows it, filtered to gw2, from the shared history.
    const past = await admin<PastSessions>(0, '/api/history/sessions?window_hours=1&gateway=gw2');
    expect(past).toEqual({
      available: true,
      sessions: [expect.objectContaining({ id: gw2Row.id, user: 'alice', status: 'closed', endReason: 'crash', gateway: 'gw2' })],
    });
  });

  it('answers stats, history and users for the fleet from any gateway, and says which figures are whose', async () => {
    // After the first test: alice live on gw1 and gw3, gw2's session closed as crash, gw3 refused her (user_limit).
    type Stats = { activeSessions: number; activeUsers: number; sessionsInWindow: number; topUsers: { user: string }[]; rejections: Record<string, number>; scope: unknown };
    const fleetStats = await until("the fleet's stats with gw3's refusals flushed", 20_000, async () => {
      const s = await admin<Stats>(0, '/api/stats?window_hours=1');
      return (s.rejections.user_limit ?? 0) >= 1 ? s : null;
    });
    expect(fleetStats).toMatchObject({
      activeSessions: 2,
      activeUsers: 1,
      sessionsInWindow: 3,
      topUsers: [{ user: 'alice' }],
      scope: { gateway: 'gw1', history: 'fleet', live: 'fleet' },
    });
    // One gateway's share, asked of another: history and live figures both filtered.
    expect(await admin<Stats>(2, '/api/stats?window_hours=1&gateway=gw2')).toMatchObject({
      activeSessions: 0,
      sessionsInWindow: 1,
      rejections: {},
      scope: { gateway: 'gw3', history: 'fleet', live: 'fleet' },
    });
    expect(await admin<Stats>(0, '/api/stats?window_hours=1&gateway=gw3')).toMatchObject({ activeSessions: 1, sessionsInWindow: 1, rejections: { user_limit: expect.any(Number) } });

    // Every gateway's rows, each with its gateway, from any gateway.
    const past = await admin<PastSessions>(2, '/api/history/sessions?window_hours=1');
    expect(past.sessions.map((s) => [s.gateway, s.status, s.endReason]).sort()).toEqual([
      ['gw1', 'open', null],
      ['gw2', 'closed', 'crash'],
      ['gw3', 'open', null],
    ]);
    const hourly = await admin<{ available: boolean; hours: { sessions: number }[] }>(0, '/api/history/hourly?window_hours=1&gateway=gw2');
    expect(hourly.available).toBe(true);
    expect(hourly.hours.reduce((a, h) => a + h.sessions, 0)).toBe(1);

    // A user: her live sessions on every gateway, her usage from the fleet's history.
    const alice = await admin<{ sessions: { gateway?: string }[]; usage: { sessions: number }; scope: unknown }>(0, '/api/users/alice');
    expect(alice.sessions.map((s) => s.gateway).sort()).toEqual(['gw1', 'gw3']);
    expect(alice).toMatchObject({ usage: { sessions: 3 }, scope: { gateway: 'gw1', sessions: 'fleet', usage: 'fleet' } });

    // The console's Now snapshot stays this gateway's own, and says whose it is.
    const overview = await admin<{ sessions: unknown[]; gateway: unknown }>(0, '/api/overview');
    expect(overview.gateway).toMatchObject({ id: 'gw1', fleet: true, historyBackend: 'postgres', history: 'ok' });
    expect(overview.sessions).toHaveLength(1);
  });
});
