/**
 * A session that passes admission but cannot be opened (here: the address pool is empty) is closed with ONE
 * close message that says why and that a retry may help; it used to get two (a sendControl of the close
 * message, then close() sending it again).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ControlMessage } from '../../src/transport/control.js';
import { serverConfig, testPasswordHash, userConfig } from '../support/config-fixture.js';
import { startMemoryGateway, nextControl, type MemoryGateway } from '../support/memory-gateway.js';
import { tick } from '../support/wait.js';

let running: MemoryGateway | null = null;
afterEach(async () => {
  await running?.gateway.stop();
  running = null;
});

describe('a session that fails to open', () => {
  it('gets exactly one close message (pool_exhausted, retry)', async () => {
    const users = [userConfig('alice', { passwordHash: await testPasswordHash('a') }), userConfig('bob', { passwordHash: await testPasswordHash('b') })];
    // A /30 has one client address: the second session finds the pool empty after admission.
    running = await startMemoryGateway(serverConfig({ users, networks: { ipv4: { cidr: '198.18.0.0/30', gateway: '198.18.0.1' }, ipv6: null } }));
    const first = await running.listener.connect('alice', 'a');
    if ('refused' in first) throw new Error('first refused');
    await nextControl(first.pair.client, 'assign');
    const second = await running.listener.connect('bob', 'b');
    if ('refused' in second) throw new Error('second refused at admission');
    const received: ControlMessage[] = [];
    second.pair.client.setControlHandler((m) => received.push(m));
    await second.pair.client.closed;
    for (let i = 0; i < 5; i++) await tick();
    const closes = received.filter((m) => m.type === 'close');
    expect(closes).toEqual([{ type: 'close', reason: 'pool_exhausted', message: expect.any(String), retry: true }]);
  });
});
