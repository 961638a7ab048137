/**
 * The fleet topology itself (helpers/fleet.ts): three real gateways in namespaces of their own against one
 * real redis-server in the services namespace; a client reaches each of them through its tunnel, and every
 * gateway reaches Redis. Other fleet suites build on this harness (fleet-rate.test.ts, ...).
 *
 *   qge-…-s   services  192.0.2.250 (redis :6379)
 *   qge-…-g1  gw1 192.0.2.1   tunnel 198.18.1.1      qge-…-c1  alice   192.0.2.11
 *   qge-…-g2  gw2 192.0.2.2   tunnel 198.18.2.1
 *   qge-…-g3  gw3 192.0.2.3   tunnel 198.18.3.1
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fleet, FLEET_REDIS_PORT, stopFleet } from './helpers/fleet.js';
import { SERVICES_UNDERLAY } from './helpers/netns.js';
import type { TestUser } from './helpers/quicgate.js';

const ALICE: TestUser = { name: 'alice', password: 'alice-pw', bandwidth: '50 Mbit/s' };

describe('fleet harness: three gateways, one Redis', () => {
  let fleet: Fleet | undefined;

  beforeAll(async () => {
    fleet = await Fleet.start({ gateways: 3, clients: 1, users: [ALICE] });
  }, 90_000);

  afterAll(() => stopFleet(fleet));

  it('every gateway reaches the shared redis-server', async () => {
    for (const gw of fleet!.gateways) {
      const { stdout } = await fleet!.topo.exec(gw.ns, 'redis-cli', ['-h', SERVICES_UNDERLAY, '-p', String(FLEET_REDIS_PORT), 'ping']);
      expect(stdout.trim()).toBe('PONG');
    }
  });

  it('one client namespace reaches each gateway through its own tunnel in turn', async () => {
    const f = fleet!;
    for (const gw of f.gateways) {
      const client = f.startClient(gw.index, 0, `alice-${gw.id}`, ALICE);
      try {
        await client.waitForMsg('tunnel up');
        const ping = await f.topo.exec(f.topo.clients[0]!, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', gw.tunnel4]);
        expect(ping.stdout).toMatch(/3 received/);
      } finally {
        client.signal('SIGTERM');
        await client.exited;
      }
    }
  });
});
