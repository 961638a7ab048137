/**
 * The Gateway's fleet wiring for addresses: two real Gateways over in-memory TUN and transport, against one real
 * redis-server, serving the same tunnel networks (the default config fixture's).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ServerConfig } from '../../src/config/types.js';
import { serverConfig, testPasswordHash, userConfig } from '../support/config-fixture.js';
import { nextControl, startMemoryGateway, type MemoryGateway } from '../support/memory-gateway.js';
import { startTestRedis, type TestRedis } from '../support/redis-server.js';

let redis: TestRedis;
let gateways: MemoryGateway[] = [];
let prefix = 0;
let aliceHash = '';

beforeAll(async () => {
  redis = await startTestRedis();
  aliceHash = await testPasswordHash('pw-alice');
});
afterAll(async () => {
  await redis.dispose();
});
afterEach(async () => {
  for (const g of gateways) await g.gateway.stop();
  gateways = [];
});

async function fleetOf(n: number): Promise<MemoryGateway[]> {
  const keyPrefix = `qgg${++prefix}:`;
  for (let i = 1; i <= n; i++) {
    const config: ServerConfig = serverConfig({
      users: [userConfig('alice', { passwordHash: aliceHash })],
      gatewayId: `gw${i}`,
      fleet: { redisUrl: redis.url, keyPrefix, leaseIntervalMs: 100, fallbackShare: 0.5, sessionLeaseMs: 3_000, addressReserve: 2 },
    });
    gateways.push(await startMemoryGateway(config));
  }
  return gateways;
}

async function connect(g: MemoryGateway, resume: { sessionId: string; secret: string } | null = null) {
  const outcome = await g.listener.connect('alice', 'pw-alice', { resume });
  if ('refused' in outcome) throw new Error(`refused: ${JSON.stringify(outcome.refused)}`);
  const assign = await nextControl(outcome.pair.client, 'assign');
  return { pair: outcome.pair, assign };
}

describe('Gateway with fleet addresses (real redis-server)', () => {
  it('claims at connect: alice keeps her addresses through another gateway, and a resume keeps them too', async () => {
    const [a, b] = await fleetOf(2);
    const first = await connect(a!);
    expect(a!.gateway.fleet!.addresses.heldAddresses().map((h) => h.ipv4)).toEqual([first.assign.ipv4!.address]);
    first.pair.client.close({ reason: 'client_closed' });
    await new Promise((r) => setTimeout(r, 50));
    expect(a!.gateway.fleet!.addresses.heldAddresses()).toEqual([]);

    const second = await connect(b!);
    expect(second.assign.ipv4).toEqual(first.assign.ipv4);
    expect(second.assign.ipv6).toEqual(first.assign.ipv6);

    const resumed = await connect(b!, { sessionId: second.assign.sessionId, secret: second.assign.resumeSecret! });
    expect(resumed.assign.ipv4).toEqual(first.assign.ipv4);
    expect(b!.gateway.fleet!.addresses.stats().claims).toBeGreaterThanOrEqual(2);
    expect(b!.gateway.fleet!.addresses.heldAddresses()).toHaveLength(1);
  });
});
