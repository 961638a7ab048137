/**
 * Session caps, lists and kills across a fleet (docs/fleet-sessions.md): three real gateways in namespaces of
 * their own against one real redis-server (helpers/fleet.ts), real clients through real tunnels.
 *
 *   a cap of 2 across gateways: alice on gw1 and gw2; her third session is refused by gw3 (user_limit)
 *   gw1's admin API lists both with their gateway and kills the one on gw2: that client is told to stop
 *   gw2 SIGKILLed with alice's session on it: within the lease time a session under the cap is admitted on gw3,
 *     and exactly one survivor reports gw2 lost
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet, stopFleet } from './helpers/fleet.js';
import type { QuicgateProcess, TestUser } from './helpers/quicgate.js';

const ALICE: TestUser = { name: 'alice', password: 'alice-pw', bandwidth: '50 Mbit/s' };
const LEASE_MS = 3_000;

interface SessionsAnswer {
  readonly sessions: readonly { readonly id: string; readonly user: string; readonly gateway: string }[];
  readonly fleet: { readonly gateway: string; readonly gateways: readonly string[]; readonly complete: boolean };
}

describe('fleet: session caps, lists and kills across gateways', () => {
  let fleet: Fleet | undefined;
  const clients: QuicgateProcess[] = [];

  beforeAll(async () => {
    fleet = await Fleet.start({
      gateways: 3,
      clients: 3,
      users: [ALICE],
      serverYaml: 'limits: { max_sessions_per_user: 2, at_limit: reject }',
      fleetYaml: `session_lease: ${LEASE_MS / 1000}s`,
    });
  }, 90_000);

  afterAll(async () => {
    for (const c of clients) if (c.running) c.signal('SIGKILL');
    await stopFleet(fleet);
  });

  const sessions = async (index: number, query = ''): Promise<SessionsAnswer> => {
    const answer = await fleet!.admin(index, 'GET', `/api/sessions${query}`);
    expect(answer.status).toBe(200);
    return answer.body as SessionsAnswer;
  };
  const client = (gateway: number, clientIndex: number, key: string): QuicgateProcess => {
    const c = fleet!.startClient(gateway, clientIndex, key, ALICE);
    clients.push(c);
    return c;
  };

  it('holds a cap of 2 across gateways, lists the fleet from any gateway, and kills a session on another gateway', async () => {
    const f = fleet!;
    const onGw1 = client(0, 0, 'alice-gw1');
    await onGw1.waitForMsg('tunnel up');
    const onGw2 = client(1, 1, 'alice-gw2');
    await onGw2.waitForMsg('tunnel up');

    // The third, on a gateway that has none of her sessions, is refused fleet-wide (the client keeps retrying).
    const gw3 = f.proc(2);
    const from = gw3.lines.length;
    const third = client(2, 2, 'alice-gw3');
    await gw3.waitFor((l) => l.msg === 'session refused' && l.user === 'alice' && l.reason === 'user_limit', 20_000, from);
    expect(third.lines.some((l) => l.msg === 'tunnel up')).toBe(false);
    third.signal('SIGTERM');
    await third.exited;

    const listed = await sessions(2);
    expect(listed.fleet).toMatchObject({ gateway: 'gw3', gateways: ['gw1', 'gw2', 'gw3'], complete: true });
    expect(listed.sessions.map((s) => [s.user, s.gateway]).sort()).toEqual([
      ['alice', 'gw1'],
      ['alice', 'gw2'],
    ]);
    expect((await sessions(0, '?gateway=gw2')).sessions.map((s) => s.gateway)).toEqual(['gw2']);

    // gw1's admin API ends the session that lives on gw2; gw2 closes it and its client stops (admin_kill).
    const target = listed.sessions.find((s) => s.gateway === 'gw2')!;
    const killed = await f.admin(0, 'DELETE', `/api/sessions/${target.id}`);
    expect(killed).toEqual({ status: 200, body: { id: target.id, closed: true, reason: 'admin_kill', gateway: 'gw2' } });
    await f.proc(1).waitFor((l) => l.msg === 'session ended' && l.session === target.id && l.reason === 'admin_kill', 10_000);
    const exit = await onGw2.exited;
    expect(exit.code).toBe(3);
    expect((await sessions(0)).sessions.map((s) => s.gateway)).toEqual(['gw1']);
  });

  it("stops counting a SIGKILLed gateway's sessions within the lease time", async () => {
    const f = fleet!;
    const onGw2 = client(1, 1, 'alice-gw2-again');
    await onGw2.waitForMsg('tunnel up');
    expect((await sessions(0)).sessions).toHaveLength(2);

    // At the cap: a client on gw3 is refused and retries every 300 ms..2 s.
    const gw3 = f.proc(2);
    const from = gw3.lines.length;
    const waiting = client(2, 2, 'alice-gw3-waiting');
    await gw3.waitFor((l) => l.msg === 'session refused' && l.reason === 'user_limit', 20_000, from);

    const lostFrom = [f.proc(0).lines.length, gw3.lines.length];
    const killedAt = Date.now();
    await f.stopGateway(1, 'SIGKILL');
    await waiting.waitForMsg('tunnel up', LEASE_MS + 10_000);
    // The lease was renewed at most a third of it before the kill; the client's backoff adds up to 2 s.
    expect(Date.now() - killedAt).toBeLessThan(LEASE_MS + 2_000 + 3_000);

    const listed = await sessions(0);
    expect(listed.fleet.gateways).toEqual(['gw1', 'gw3']);
    expect(listed.sessions.map((s) => s.gateway).sort()).toEqual(['gw1', 'gw3']);

    // Exactly one of the survivors found gw2 lost (the heartbeat script removes it atomically).
    const lostLines = (p: QuicgateProcess, start: number) => p.lines.slice(start).filter((l) => l.msg.startsWith("fleet: a gateway's lease expired") && l.gateway === 'gw2');
    const deadline = Date.now() + LEASE_MS * 3;
    while (lostLines(f.proc(0), lostFrom[0]!).length + lostLines(gw3, lostFrom[1]!).length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, LEASE_MS));
    expect(lostLines(f.proc(0), lostFrom[0]!).length + lostLines(gw3, lostFrom[1]!).length).toBe(1);
  });
});
