import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetRedis, type FleetLinkState } from '../../src/fleet/redis.js';
import { startTestRedis, waitUntil, type TestRedis } from '../support/redis-server.js';

describe('FleetRedis (real redis-server)', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    await redis.dispose();
  });

  it('goes up, down when the server dies, and up again when it returns; commands fail fast while down', async () => {
    const fleet = new FleetRedis({ redisUrl: redis.url, keyPrefix: 'qgt:' }, { maxRetryDelayMs: 100 });
    const states: FleetLinkState[] = [];
    fleet.on('state', (state) => states.push(state));
    try {
      await fleet.connect();
      expect(fleet.state).toBe('up');
      await fleet.commands.set(fleet.key('probe', 'a'), '1');
      expect(await fleet.commands.get('qgt:probe:a')).toBe('1');

      await redis.stop();
      await waitUntil(() => fleet.state === 'down', 10_000, 'link down');
      const started = Date.now();
      await expect(fleet.commands.get(fleet.key('probe', 'a'))).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(5_000);

      await redis.start();
      await waitUntil(() => fleet.state === 'up', 15_000, 'link up again');
      expect(await fleet.commands.ping()).toBe('PONG');
      expect(states).toEqual(['up', 'down', 'up']);
    } finally {
      await fleet.close();
    }
  });

  it('stays up on an error that does not break the link (a failed connect() on a live link, an error event)', async () => {
    const fleet = new FleetRedis({ redisUrl: redis.url, keyPrefix: 'qgt2:' });
    try {
      await fleet.connect();
      fleet.connectInBackground(); // ioredis refuses a second connect(): "already connecting/connected"
      fleet.commands.emit('error', new Error('a command failed'));
      await new Promise((r) => setTimeout(r, 50));
      expect(fleet.state).toBe('up');
    } finally {
      await fleet.close();
    }
  });
});
