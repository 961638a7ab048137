/**
 * Fleet-wide tunnel addresses and the fleet-wide auth throttle (helpers/fleet.ts, shared pools): two real
 * gateways serving the same tunnel network 198.18.0.0/16 against one real redis-server.
 *
 *   qge-…-s   services  192.0.2.250 (redis :6379)
 *   qge-…-g1  gw1 192.0.2.1   tunnel 198.18.0.0/16, 2001:db8:1::/64     qge-…-c1  alice 192.0.2.11
 *   qge-…-g2  gw2 192.0.2.2   the same networks                          qge-…-c2  bob   192.0.2.12
 *                                                                         qge-…-c3  guesser 192.0.2.13
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet, stopFleet } from './helpers/fleet.js';
import { metricSamples } from './helpers/hostile-ops.js';
import type { LogLine, QuicgateProcess, TestUser } from './helpers/quicgate.js';

const HOSTILE = resolve(import.meta.dirname, 'helpers/hostile-client.mjs');
const ALICE: TestUser = { name: 'alice', password: 'alice-pw', bandwidth: '100 Mbit/s' };
const BOB: TestUser = { name: 'bob', password: 'bob-pw', bandwidth: '100 Mbit/s' };
const BUDGET = 4;

interface LoginOutcome {
  readonly ok: boolean;
  readonly status?: number;
}

interface HeldView {
  readonly addresses: { readonly held: readonly { address: string; user: string }[] } | null;
}

describe('fleet addresses: unique, sticky through any gateway; auth throttle fleet-wide', () => {
  let fleet: Fleet | undefined;

  beforeAll(async () => {
    fleet = await Fleet.start({
      gateways: 2,
      clients: 3,
      users: [ALICE, BOB],
      pools: 'shared',
      serverYaml: `auth_attempts: { per_source_per_minute: ${BUDGET} }`,
    });
  }, 90_000);

  afterAll(() => stopFleet(fleet));

  async function up(gateway: number, clientIndex: number, key: string, user: TestUser): Promise<{ client: QuicgateProcess; line: LogLine }> {
    const client = fleet!.startClient(gateway, clientIndex, key, user);
    const line = await client.waitForMsg('tunnel up', 30_000);
    return { client, line };
  }

  async function down(client: QuicgateProcess): Promise<void> {
    client.signal('SIGTERM');
    await client.exited;
  }

  async function ping(clientIndex: number, target: string): Promise<string> {
    const f = fleet!;
    return (await f.topo.exec(f.topo.clients[clientIndex]!, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', target])).stdout;
  }

  async function held(gateway: number): Promise<string[]> {
    const answer = await fleet!.admin(gateway, 'GET', '/api/fleet');
    expect(answer.status).toBe(200);
    return ((answer.body as HeldView).addresses?.held ?? []).map((h) => `${h.user} ${h.address}`);
  }

  it('alice gets the same addresses through gw2 after gw1, ping works through both, and each gateway lists what it holds', async () => {
    const f = fleet!;
    const first = await up(0, 0, 'alice-gw1', ALICE);
    const v4 = String(first.line.ipv4);
    const v6 = String(first.line.ipv6);
    expect(v4).toMatch(/^198\.18\./);
    expect(await ping(0, f.gateway(0).tunnel4)).toMatch(/3 received/);
    expect(await held(0)).toEqual(expect.arrayContaining([`alice ${v4}`, `alice ${v6}`]));
    expect(await held(1)).toEqual([]);
    await down(first.client);
    await f.proc(0).waitFor((l) => l.msg === 'session ended' && l.user === 'alice', 10_000);

    const second = await up(1, 0, 'alice-gw2', ALICE);
    try {
      expect(second.line.ipv4).toBe(v4);
      expect(second.line.ipv6).toBe(v6);
      expect(await ping(0, f.gateway(1).tunnel4)).toMatch(/3 received/);
      expect(await held(1)).toEqual(expect.arrayContaining([`alice ${v4}`, `alice ${v6}`]));
      expect(await held(0)).toEqual([]);
    } finally {
      await down(second.client);
    }
  });

  it('a router that routes each held address (GET /api/fleet) to its gateway reaches the client; the wrong gateway does not', async () => {
    const f = fleet!;
    const router = f.topo.server; // the services namespace stands for the upstream router
    const alice = await up(1, 0, 'alice-routed', ALICE);
    const v4 = String(alice.line.ipv4);
    try {
      // What an operator's sync job does: the held list of each gateway becomes host routes via that gateway.
      for (const i of [0, 1]) {
        for (const entry of await held(i)) {
          const address = entry.split(' ')[1]!;
          if (address.includes(':')) continue;
          await f.topo.exec(router, 'ip', ['route', 'replace', `${address}/32`, 'via', f.gateway(i).underlay]);
        }
      }
      const route = await f.topo.exec(router, 'ip', ['route', 'get', v4]);
      expect(route.stdout).toContain(`via ${f.gateway(1).underlay}`);
      // The gateways route between underlay and tunnel (an operator enables forwarding on a gateway host), and
      // alice's replies to the router go back through her tunnel (as with a full-tunnel client).
      for (const i of [0, 1]) await f.topo.exec(f.gateway(i).ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      await f.topo.exec(f.topo.clients[0]!, 'ip', ['route', 'replace', '192.0.2.250/32', 'dev', 'qgc0']);
      expect(await ping2(router, v4)).toMatch(/3 received/);
      // Routed to the gateway that does not hold it, nothing comes back.
      await f.topo.exec(router, 'ip', ['route', 'replace', `${v4}/32`, 'via', f.gateway(0).underlay]);
      expect(await ping2(router, v4)).toMatch(/ 0 received/);
    } finally {
      await f.topo.exec(router, 'ip', ['route', 'del', `${v4}/32`]).catch(() => undefined);
      await down(alice.client);
    }
  });

  async function ping2(ns: string, target: string): Promise<string> {
    const result = await fleet!.topo.exec(ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', target]).catch((err: unknown) => ({ stdout: String((err as { stdout?: string }).stdout ?? err) }));
    return result.stdout;
  }

  it('two users on two gateways never share an address, over several rounds', async () => {
    const seen: string[] = [];
    for (let round = 0; round < 3; round++) {
      const [a, b] = await Promise.all([up(round % 2, 0, `alice-r${round}`, ALICE), up((round + 1) % 2, 1, `bob-r${round}`, BOB)]);
      try {
        expect(a.line.ipv4).not.toBe(b.line.ipv4);
        expect(a.line.ipv6).not.toBe(b.line.ipv6);
        expect(await ping(0, fleet!.gateway(round % 2).tunnel4)).toMatch(/3 received/);
        expect(await ping(1, fleet!.gateway((round + 1) % 2).tunnel4)).toMatch(/3 received/);
        seen.push(`${String(a.line.ipv4)}/${String(b.line.ipv4)}`);
      } finally {
        await Promise.all([down(a.client), down(b.client)]);
      }
    }
    expect(seen).toHaveLength(3);
  });

  it('throttles 2 x budget wrong passwords from one source split across both gateways to one budget', async () => {
    const f = fleet!;
    // The fleet's windows are wall-clock minutes: start early in one, so that all attempts fall in the same one.
    const into = Date.now() % 60_000;
    if (into > 40_000) await new Promise((r) => setTimeout(r, 60_000 - into + 500));
    const outcomes: LoginOutcome[] = [];
    for (let i = 0; i < 2 * BUDGET; i++) {
      const gw = f.gateway(i % 2);
      const options = { mode: 'login', transport: 'h2', url: gw.url, caFile: gw.files.caFile, user: 'alice', password: 'guess', attempts: 1 };
      const { stdout } = await f.topo.exec(f.topo.clients[2]!, process.execPath, [HOSTILE, JSON.stringify(options)], 60_000);
      outcomes.push(...stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LoginOutcome));
    }
    expect(outcomes).toHaveLength(2 * BUDGET);
    expect(outcomes.every((o) => !o.ok)).toBe(true);
    // One budget for the fleet: BUDGET wrong passwords were checked, the other BUDGET throttled (each gateway
    // alone would have checked all of its BUDGET).
    expect(outcomes.filter((o) => o.status === 401)).toHaveLength(BUDGET);
    expect(outcomes.filter((o) => o.status === 429)).toHaveLength(BUDGET);
    let throttled = 0;
    for (const i of [0, 1]) throttled += metricSamples(await f.metrics(i), 'quicgate_rejections_total').get('reason="throttled"') ?? 0;
    expect(throttled).toBe(BUDGET);
  });
});
