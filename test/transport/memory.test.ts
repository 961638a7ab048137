import { describe, expect, it } from 'vitest';
import type { ControlMessage } from '../../src/transport/control.js';
import { closeMessageFor, defaultRetry } from '../../src/transport/connection-base.js';
import { createMemoryPair } from '../../src/transport/memory.js';
import type { TunnelConnection } from '../../src/transport/types.js';
import { settle as settleRounds } from '../support/wait.js';

const settle = (rounds = 5): Promise<void> => settleRounds(rounds);


function collect(connection: TunnelConnection): { packets: Buffer[]; batches: number } {
  const state = { packets: [] as Buffer[], batches: 0 };
  connection.setReceiver({
    onPacket: (data, offset, length) => state.packets.push(Buffer.from(data.subarray(offset, offset + length))),
    onBatchEnd: () => void state.batches++,
  });
  return state;
}

describe('createMemoryPair', () => {
  it('carries packets both ways byte-exact, coalesced into few datagrams', async () => {
    const { client, server } = createMemoryPair();
    const atServer = collect(server);
    const atClient = collect(client);
    const up = Array.from({ length: 200 }, (_, i) => Buffer.alloc(100 + i, i));
    const down = Array.from({ length: 50 }, (_, i) => Buffer.alloc(1400, 255 - i));
    for (const p of up) expect(client.sendPacket(p, 0, p.length)).toBe(true);
    client.flush();
    for (const p of down) server.sendPacket(p, 0, p.length);
    server.flush();
    await settle();
    expect(atServer.packets).toEqual(up);
    expect(atClient.packets).toEqual(down);
    expect(client.stats.datagramsSent).toBeLessThan(10);
    expect(server.stats.datagramsReceived).toBe(client.stats.datagramsSent);
    expect(atServer.batches).toBe(client.stats.datagramsSent);
  });

  it('bounds the send queue: packets beyond the limit are dropped and counted', async () => {
    const { client, server } = createMemoryPair({ sendQueuePackets: 10, linkDatagrams: 1, maxDatagramBytes: 1024 });
    const atServer = collect(server);
    const packet = Buffer.alloc(500, 1);
    let accepted = 0;
    for (let i = 0; i < 100; i++) if (client.sendPacket(packet, 0, packet.length)) accepted++;
    client.flush();
    // One datagram (2 packets) went on the link at once, the rest waited: 10 queued + 2 on the wire.
    expect(accepted).toBeLessThan(20);
    expect(client.stats.queueDrops).toBe(100 - accepted);
    await settle(20);
    expect(atServer.packets.length).toBe(accepted);
  });

  it('sends control messages both ways and holds early ones until a handler is set', async () => {
    const { client, server } = createMemoryPair();
    const atServer: ControlMessage[] = [];
    server.setControlHandler((m) => atServer.push(m));
    client.sendControl({ type: 'keepalive', t: 5 });
    server.sendControl({ type: 'keepalive_ack', t: 5 });
    await settle();
    expect(atServer).toEqual([{ type: 'keepalive', t: 5 }]);
    const atClient: ControlMessage[] = [];
    client.setControlHandler((m) => atClient.push(m));
    expect(atClient).toEqual([{ type: 'keepalive_ack', t: 5 }]);
  });

  it('drops and counts malformed control lines and datagrams without throwing', async () => {
    const pair = createMemoryPair();
    const got: ControlMessage[] = [];
    pair.server.setControlHandler((m) => got.push(m));
    const atServer = collect(pair.server);
    pair.injectControlBytes('server', new TextEncoder().encode('not json\n{"type":"nope"}\n{"type":"keep'));
    pair.injectControlBytes('server', new TextEncoder().encode('alive","t":1}\n'));
    pair.injectDatagram('server', Uint8Array.from([0, 9, 1]));
    pair.injectControlBytes('server', new TextEncoder().encode(`${'x'.repeat(20_000)}`));
    pair.injectControlBytes('server', new TextEncoder().encode(`${'x'.repeat(20_000)}\n{"type":"keepalive","t":2}\n`));
    await settle();
    expect(got).toEqual([
      { type: 'keepalive', t: 1 },
      { type: 'keepalive', t: 2 },
    ]);
    expect(atServer.packets).toEqual([]);
    // two bad lines + one bad datagram + one over-long line (counted once)
    expect(pair.server.stats.malformed).toBe(4);
  });

  it('delivers the close reason to the other side', async () => {
    const { client, server } = createMemoryPair();
    const seen: ControlMessage[] = [];
    client.setControlHandler((m) => seen.push(m));
    server.close({ reason: 'admin_kill', message: 'bye' });
    server.close({ reason: 'error' }); // idempotent
    expect(await server.closed).toEqual({ reason: 'admin_kill', message: 'bye', retry: false });
    expect(await client.closed).toEqual({ reason: 'admin_kill', message: 'bye', retry: false });
    expect(seen).toEqual([{ type: 'close', reason: 'admin_kill', message: 'bye', retry: false }]);
    expect(client.sendPacket(Buffer.alloc(10), 0, 10)).toBe(false);
  });

  it('carries an explicit retry as given, whatever the reason', async () => {
    const { client, server } = createMemoryPair();
    server.close({ reason: 'admin_kill', message: 'come back', retry: true });
    expect(await client.closed).toEqual({ reason: 'admin_kill', message: 'come back', retry: true });
  });

  it("sets retry from the gateway's policy when the closer leaves it out: no comeback after an operator's or the quota's decision", () => {
    for (const reason of ['admin_kill', 'replaced', 'user_removed', 'quota_exceeded', 'user_disabled', 'auth_failed']) {
      expect(defaultRetry(reason), reason).toBe(false);
      expect(closeMessageFor({ reason }).retry, reason).toBe(false);
    }
    for (const reason of ['server_shutdown', 'idle_timeout', 'session_timeout', 'error', 'client_closed', 'connection_lost', 'pool_exhausted']) {
      expect(defaultRetry(reason), reason).toBe(true);
      expect(closeMessageFor({ reason }).retry, reason).toBe(true);
    }
  });

  it('ends both sides with connection_lost when the link breaks', async () => {
    const pair = createMemoryPair();
    pair.breakLink();
    expect((await pair.client.closed).reason).toBe('connection_lost');
    expect((await pair.server.closed).reason).toBe('connection_lost');
  });
});
