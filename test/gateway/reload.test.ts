/**
 * Reload (issue 12 §2): what each changed setting does comes from the schema (RELOAD_EFFECTS); live ones apply
 * at once, restart ones keep their running value, every changed key is reported; reloads run one at a time and
 * the last file read wins. Real Gateway over in-memory parts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RELOAD_EFFECTS } from '../../src/config/schema.js';
import type { ServerConfig } from '../../src/config/types.js';
import { ReloadQueue } from '../../src/gateway/reload-queue.js';
import { serverConfig, testPasswordHash, userConfig } from '../support/config-fixture.js';
import { nextControl, startMemoryGateway, type MemoryGateway } from '../support/memory-gateway.js';
import { ipv4Packet } from '../support/packets.js';
import { until } from '../support/wait.js';

let running: MemoryGateway | null = null;
afterEach(async () => {
  await running?.gateway.stop();
  running = null;
});

async function start(overrides: Partial<ServerConfig> = {}): Promise<MemoryGateway> {
  const users = [userConfig('bob', { passwordHash: await testPasswordHash('b') })];
  running = await startMemoryGateway(serverConfig({ users, ...overrides }));
  return running;
}

async function connect(g: MemoryGateway) {
  const result = await g.listener.connect('bob', 'b');
  if ('refused' in result) throw new Error('refused');
  const assign = await nextControl(result.pair.client, 'assign');
  return { client: result.pair.client, assign };
}

describe('reload metadata', () => {
  it('classifies every setting of the server config', () => {
    expect(Object.keys(RELOAD_EFFECTS).sort()).toEqual(Object.keys(serverConfig()).sort());
  });
});

describe('Gateway.reload', () => {
  it('reports every changed key with its effect and keeps restart settings at their running value', async () => {
    const g = await start();
    const before = g.gateway.currentConfig;
    const next: ServerConfig = {
      ...before,
      shapingDelayMs: before.shapingDelayMs + 25,
      sendQueuePackets: before.sendQueuePackets * 2,
      tunOffload: !before.tunOffload,
      tls: { certFile: '/etc/quicgate/new.pem', keyFile: '/etc/quicgate/new.key', names: [] },
      transports: { h2: false, h3: 'auto', quic: 'off' },
      allowClientToClient: !before.allowClientToClient,
      logLevel: 'debug',
      dns: ['198.18.0.53'],
      keepaliveIntervalMs: before.keepaliveIntervalMs + 1000,
    };
    const summary = g.gateway.reload(next);
    const effects = Object.fromEntries(summary.changed.map((c) => [c.key, c.effect]));
    expect(effects).toEqual({
      shaping_delay: 'restart',
      send_queue_packets: 'restart',
      'tunnel.offload': 'restart',
      tls: 'restart',
      transports: 'restart',
      allow_client_to_client: 'live',
      log_level: 'live',
      'tunnel.dns': 'new_sessions',
      keepalive_interval: 'new_sessions',
    });
    expect([...summary.needRestart].sort()).toEqual(['send_queue_packets', 'shaping_delay', 'tls', 'transports', 'tunnel.offload']);
    const now = g.gateway.currentConfig;
    expect(now.shapingDelayMs).toBe(before.shapingDelayMs);
    expect(now.sendQueuePackets).toBe(before.sendQueuePackets);
    expect(now.tunOffload).toBe(before.tunOffload);
    expect(now.tls).toEqual(before.tls);
    expect(now.transports).toEqual(before.transports);
    expect(now.allowClientToClient).toBe(next.allowClientToClient);
    expect(now.logLevel).toBe('debug');
    // new_sessions settings reach the next assignment.
    const { assign } = await connect(g);
    expect(assign.dns).toEqual(['198.18.0.53']);
    expect(assign.keepaliveMs).toBe(next.keepaliveIntervalMs);
    // The same file again: only the restart settings still differ from what runs; the running config: nothing.
    expect(g.gateway.reload(next).changed.map((c) => c.effect)).toEqual(Array(5).fill('restart'));
    expect(g.gateway.reload(g.gateway.currentConfig).changed).toEqual([]);
  });

  it('applies allow_client_to_client to live sessions at once', async () => {
    const g = await start({ allowClientToClient: false });
    const a = await connect(g);
    const b = await connect(g);
    const packet = ipv4Packet(a.assign.ipv4!.address, b.assign.ipv4!.address, 100);
    a.client.sendPacket(packet, 0, packet.length);
    a.client.flush();
    await until(() => g.gateway.drops.client_to_client === 1, 'client_to_client drop');
    g.gateway.reload({ ...g.gateway.currentConfig, allowClientToClient: true });
    a.client.sendPacket(packet, 0, packet.length);
    a.client.flush();
    await until(() => g.tun.written.length === 1, 'forwarded after the reload');
    expect(g.gateway.drops.client_to_client).toBe(1);
  });
});

describe('ReloadQueue', () => {
  it('runs reloads one at a time, each reading when its turn comes: the last file read is applied last', async () => {
    let file = 'v1';
    const events: string[] = [];
    let release: (() => void) | null = null;
    const queue = new ReloadQueue(async () => {
      const read = file;
      events.push(`read ${read}`);
      if (read === 'v1') await new Promise<void>((resolve) => (release = resolve)); // this reload is slow
      events.push(`apply ${read}`);
      return read;
    });
    const first = queue.run();
    await until(() => release !== null, 'first reload reading');
    file = 'v2';
    const second = queue.run();
    const third = queue.run();
    file = 'v3';
    release!();
    expect([await first, await second, await third]).toEqual(['v1', 'v3', 'v3']);
    expect(events).toEqual(['read v1', 'apply v1', 'read v3', 'apply v3', 'read v3', 'apply v3']);
  });

  it('keeps going after a failed reload', async () => {
    let fail = true;
    const queue = new ReloadQueue(async () => {
      if (fail) throw new Error('bad file');
      return 'ok';
    });
    await expect(queue.run()).rejects.toThrow('bad file');
    fail = false;
    expect(await queue.run()).toBe('ok');
  });
});
