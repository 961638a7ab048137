/**
 * The reconnecting client over in-memory parts: a scripted gateway (server side of createMemoryPair), a
 * MemoryTun for the client's TUN, and a FakeClock for keepalives and backoff.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { PATH_PROBE_MS, TunnelClient, clientTunSettings, type PathWatch } from '../../src/client/tunnel-client.js';
import { EXIT_REJECTED, EXIT_USAGE, exitCodeFor } from '../../src/cli/fail.js';
import type { ClientConfig } from '../../src/config/types.js';
import { QuicgateError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import type { AssignControl, ControlMessage } from '../../src/transport/control.js';
import { createMemoryPair, type MemoryPair } from '../../src/transport/memory.js';
import type { Refusal, ResumeClaim, TunnelConnection } from '../../src/transport/types.js';
import { refusalRetries } from '../../src/transport/wt-auth.js';
import type { TunSettings } from '../../src/tun/device.js';
import { MemoryTun } from '../../src/tun/memory.js';
import { FakeConnection } from '../support/fake-connection.js';
import { ipv4Packet } from '../support/packets.js';
import { until } from '../support/wait.js';


const CONFIG: ClientConfig = {
  source: '<test>',
  server: 'https://192.0.2.1:4433/',
  user: 'alice',
  password: 'pw',
  transport: 'h2',
  caFile: null,
  pinnedCertHashes: [],
  tunName: 'qgc0',
  tunOffload: true,
  setDns: false,
  reconnect: { initialMs: 1000, maxMs: 8000, maxAttempts: null },
  deadAfterMissedKeepalives: 3,
  logLevel: 'info',
};

function assignment(address = '198.18.0.7'): AssignControl {
  return {
    type: 'assign',
    sessionId: 's1',
    ipv4: { address, prefix: 16, gateway: '198.18.0.1' },
    ipv6: null,
    mtu: 1400,
    dns: [],
    routes: ['0.0.0.0/0', '198.19.0.0/16'],
    keepaliveMs: 1000,
    resumeSecret: 'secret-of-s1',
  };
}

/** A scripted gateway: each connect() makes a pair and lets the test decide how the server side behaves. */
class ScriptedGateway {
  readonly pairs: MemoryPair[] = [];
  readonly requests: { previousAddresses: readonly string[]; resume: ResumeClaim | null }[] = [];
  readonly controls: ControlMessage[][] = [];
  refuse: QuicgateError | null = null;
  /** Instead of the assignment, the gateway sends this close first (a refusal after the session opened). */
  closeBeforeAssign: { reason: string; retry: boolean } | null = null;
  answerKeepalives = true;
  address = '198.18.0.7';
  /** HTTP/3's refusal: the session opens, then closes at once carrying the refusal (wt-auth.ts). */
  refusedByClose: Refusal | null = null;

  connect = async ({ previousAddresses, resume }: { previousAddresses: readonly string[]; resume: ResumeClaim | null }): Promise<TunnelConnection> => {
    this.requests.push({ previousAddresses, resume });
    if (this.refuse) throw this.refuse;
    if (this.refusedByClose) {
      const refused = this.refusedByClose;
      const connection = new FakeConnection();
      queueMicrotask(() => connection.clientLeaves({ reason: refused.code, message: refused.message, retry: refusalRetries(refused.status), refused }));
      return connection;
    }
    const pair = createMemoryPair();
    const seen: ControlMessage[] = [];
    this.pairs.push(pair);
    this.controls.push(seen);
    pair.server.setControlHandler((m) => {
      seen.push(m);
      if (m.type === 'keepalive' && this.answerKeepalives) pair.server.sendControl({ type: 'keepalive_ack', t: m.t });
    });
    if (this.closeBeforeAssign) pair.server.close(this.closeBeforeAssign);
    else pair.server.sendControl(assignment(this.address));
    return pair.client;
  };
}

let client: TunnelClient | null = null;
afterEach(async () => {
  await client?.stop();
  client = null;
});

function makeClient(gw: ScriptedGateway, clock: FakeClock, config: ClientConfig = CONFIG, watchPath?: PathWatch) {
  const tuns: { settings: TunSettings; tun: MemoryTun }[] = [];
  client = new TunnelClient(config, {
    logger: silentLogger(),
    clock,
    connect: gw.connect,
    ...(watchPath === undefined ? {} : { watchPath }),
    openTun: async (settings) => {
      const tun = new MemoryTun({ name: settings.name, mtu: settings.mtu });
      tuns.push({ settings, tun });
      return tun;
    },
  });
  const done = client.run();
  return { client, tuns, done };
}

describe('TunnelClient', () => {
  it('brings up the TUN from the assignment, with a default route split in halves, and forwards both ways', async () => {
    const gw = new ScriptedGateway();
    const { client: c, tuns } = makeClient(gw, new FakeClock());
    await until(() => c.state.kind === 'up', 'tunnel up');
    expect(tuns).toHaveLength(1);
    expect(tuns[0]!.settings).toMatchObject({ name: 'qgc0', mtu: 1400, addresses: [{ cidr: '198.18.0.7/16' }] });
    expect(tuns[0]!.settings.routes).toEqual(['0.0.0.0/1', '128.0.0.0/1', '198.19.0.0/16']);
    const received: Buffer[] = [];
    gw.pairs[0]!.server.setReceiver({ onPacket: (d, o, l) => void received.push(Buffer.from(d.subarray(o, o + l))), onBatchEnd() {} });
    const up = ipv4Packet('198.18.0.7', '198.18.0.1');
    tuns[0]!.tun.inject([up]);
    await until(() => received.length === 1, 'packet at the gateway');
    expect(received[0]).toEqual(up);
    const down = ipv4Packet('198.18.0.1', '198.18.0.7');
    gw.pairs[0]!.server.sendPacket(down, 0, down.length);
    gw.pairs[0]!.server.flush();
    await until(() => tuns[0]!.tun.written.length === 1, 'packet in the TUN');
    expect(Buffer.from(tuns[0]!.tun.written[0]!)).toEqual(down);
  });

  it('sends keepalives at the interval, detects a dead path after the missed limit, and reconnects with its address', async () => {
    const clock = new FakeClock();
    const gw = new ScriptedGateway();
    const { client: c, tuns } = makeClient(gw, clock);
    await until(() => c.state.kind === 'up', 'tunnel up');
    clock.advance(1000);
    await until(() => gw.controls[0]!.some((m) => m.type === 'keepalive'), 'keepalive');
    gw.answerKeepalives = false;
    clock.advance(1000);
    clock.advance(1000);
    clock.advance(1000);
    await until(() => c.state.kind === 'waiting', 'dead path noticed');
    expect(c.state.kind === 'waiting' && c.state.lastError).toMatch(/connection_lost/);
    gw.answerKeepalives = true;
    clock.advance(1000); // first backoff is at most 1 s
    await until(() => c.state.kind === 'up' && gw.pairs.length === 2, 'reconnected');
    expect(gw.requests[1]!.previousAddresses).toEqual(['198.18.0.7']);
    expect(gw.requests[0]!.resume).toBeNull();
    // It claims its old session, which the gateway may still hold, with the secret of that assignment.
    expect(gw.requests[1]!.resume).toEqual({ sessionId: 's1', secret: 'secret-of-s1' });
    expect(tuns).toHaveLength(1); // same assignment: the TUN stays up across the reconnect
  });

  it('backs off exponentially while the gateway is unreachable, and resets after a success', async () => {
    const clock = new FakeClock();
    const gw = new ScriptedGateway();
    gw.refuse = new QuicgateError('QG_ERR_CONNECT_FAILED', 'connection refused');
    const delays: number[] = [];
    const { client: c } = makeClient(gw, clock);
    c.onStateChange((s) => {
      if (s.kind === 'waiting') delays.push(s.delayMs);
    });
    for (let i = 0; i < 5; i++) {
      await until(() => delays.length === i + 1, `attempt ${i + 1}`);
      clock.advance(delays[i]!);
    }
    // equal jitter: each delay within [ceiling/2, ceiling] with ceilings 1, 2, 4, 8, 8 s
    [1000, 2000, 4000, 8000, 8000].forEach((ceiling, i) => {
      expect(delays[i]).toBeGreaterThanOrEqual(ceiling / 2);
      expect(delays[i]).toBeLessThanOrEqual(ceiling);
    });
    gw.refuse = null;
    await until(() => c.state.kind === 'up', 'up after the gateway returns');
  });

  it('stops with a clear error, without retrying, when the gateway refuses for good', async () => {
    const gw = new ScriptedGateway();
    gw.refuse = new QuicgateError('QG_ERR_REJECTED', 'unknown user or wrong password', { details: { status: 401, reason: 'QG_ERR_AUTH_FAILED', retry: false } });
    const { done } = makeClient(gw, new FakeClock());
    const error = await done;
    expect(error?.code).toBe('QG_ERR_REJECTED');
    expect(gw.requests).toHaveLength(1);
  });

  it('stops when the gateway closes the session with a final reason (user removed)', async () => {
    const gw = new ScriptedGateway();
    const { client: c, done } = makeClient(gw, new FakeClock());
    await until(() => c.state.kind === 'up', 'tunnel up');
    gw.pairs[0]!.server.close({ reason: 'user_removed', message: 'user removed from config' });
    const error = await done;
    expect(error?.code).toBe('QG_ERR_REJECTED');
    expect(error?.message).toMatch(/user_removed/);
    expect(gw.requests).toHaveLength(1);
  });

  it('stops for good, with the exit code of a final rejection, when the gateway closes with admin_kill and retry false', async () => {
    const gw = new ScriptedGateway();
    const { client: c, done, tuns } = makeClient(gw, new FakeClock());
    await until(() => c.state.kind === 'up', 'tunnel up');
    gw.pairs[0]!.server.close({ reason: 'admin_kill', message: 'killed by the operator', retry: false });
    const error = await done;
    expect(error?.code).toBe('QG_ERR_REJECTED');
    expect(error?.message).toBe('gateway closed the session: admin_kill (killed by the operator); not reconnecting');
    expect(error?.details).toEqual({ reason: 'admin_kill', retry: false });
    expect(exitCodeFor(error)).toBe(EXIT_REJECTED);
    expect(c.state).toEqual({ kind: 'stopped', error });
    expect(gw.requests).toHaveLength(1);
    expect(tuns[0]!.tun.isClosed).toBe(true);
  });

  it.each(['replaced', 'quota_exceeded'])('stops for good on %s with the retry the gateway derives from it', async (reason) => {
    const gw = new ScriptedGateway();
    const { client: c, done } = makeClient(gw, new FakeClock());
    await until(() => c.state.kind === 'up', 'tunnel up');
    gw.pairs[0]!.server.close({ reason });
    const error = await done;
    expect(error?.code).toBe('QG_ERR_REJECTED');
    expect(error?.message).toMatch(new RegExp(`: ${reason}; not reconnecting$`));
    expect(gw.requests).toHaveLength(1);
  });

  it.each([
    ['server_shutdown', undefined],
    ['session_timeout', undefined],
    ['idle_timeout', undefined],
    // The flag alone decides: a reason the gateway would not retry by default still reconnects when it says so.
    ['admin_kill', true],
  ] as const)('reconnects with backoff after a close with reason %s and retry true', async (reason, retry) => {
    const clock = new FakeClock();
    const gw = new ScriptedGateway();
    const { client: c } = makeClient(gw, clock);
    await until(() => c.state.kind === 'up', 'tunnel up');
    gw.pairs[0]!.server.close(retry === undefined ? { reason } : { reason, retry });
    await until(() => c.state.kind === 'waiting', 'waiting to reconnect');
    expect(c.state.kind === 'waiting' && c.state.lastError).toBe(`session closed: ${reason}`);
    clock.advance(1000); // first backoff is at most 1 s
    await until(() => c.state.kind === 'up' && gw.pairs.length === 2, 'reconnected');
    expect(gw.requests[1]!.previousAddresses).toEqual(['198.18.0.7']);
  });

  it('stops for good when the gateway closes with retry false before the assignment, whatever the reason', async () => {
    const gw = new ScriptedGateway();
    gw.closeBeforeAssign = { reason: 'some_future_reason', retry: false };
    const { done } = makeClient(gw, new FakeClock());
    const error = await done;
    expect(error?.code).toBe('QG_ERR_REJECTED');
    expect(error?.message).toMatch(/^gateway refused the session: some_future_reason; not reconnecting$/);
    expect(exitCodeFor(error)).toBe(EXIT_REJECTED);
    expect(gw.requests).toHaveLength(1);
  });

  it('maps an HTTP/3 refusal (carried in the session close) to QG_ERR_REJECTED and stops on 401', async () => {
    const gw = new ScriptedGateway();
    gw.refusedByClose = { status: 401, code: 'auth_failed', message: 'unknown user or wrong password' };
    const { done } = makeClient(gw, new FakeClock());
    const error = await done;
    expect(error?.code).toBe('QG_ERR_REJECTED');
    expect(error?.message).toBe('gateway refused the session (401 auth_failed): unknown user or wrong password');
    expect(error?.details).toMatchObject({ status: 401, reason: 'auth_failed', retry: false, transport: 'memory' });
    expect(exitCodeFor(error)).toBe(EXIT_REJECTED);
    expect(gw.requests).toHaveLength(1);
  });

  it('retries an HTTP/3 refusal with a retryable status (429 user_limit)', async () => {
    const clock = new FakeClock();
    const gw = new ScriptedGateway();
    gw.refusedByClose = { status: 429, code: 'user_limit', message: 'this user has reached their session limit' };
    const { client: c } = makeClient(gw, clock);
    await until(() => c.state.kind === 'waiting', 'waiting to reconnect');
    expect(c.state.kind === 'waiting' && c.state.lastError).toMatch(/\(429 user_limit\)/);
    gw.refusedByClose = null;
    clock.advance(1000);
    await until(() => c.state.kind === 'up', 'up once a slot is free');
  });

  it('retries when the gateway closes with retry true before the assignment (pool exhausted)', async () => {
    const clock = new FakeClock();
    const gw = new ScriptedGateway();
    gw.closeBeforeAssign = { reason: 'pool_exhausted', retry: true };
    const { client: c } = makeClient(gw, clock);
    await until(() => c.state.kind === 'waiting', 'waiting to reconnect');
    expect(c.state.kind === 'waiting' && c.state.lastError).toMatch(/pool_exhausted/);
    gw.closeBeforeAssign = null;
    clock.advance(1000);
    await until(() => c.state.kind === 'up', 'up once an address is free');
    expect(gw.requests).toHaveLength(2);
  });

  it('gives up after max_attempts failed attempts', async () => {
    const clock = new FakeClock();
    const gw = new ScriptedGateway();
    gw.refuse = new QuicgateError('QG_ERR_CONNECT_FAILED', 'connection refused');
    const { client: c, done } = makeClient(gw, clock, { ...CONFIG, reconnect: { initialMs: 100, maxMs: 100, maxAttempts: 2 } });
    c.onStateChange((s) => {
      if (s.kind === 'waiting') queueMicrotask(() => clock.advance(s.delayMs));
    });
    const error = await done;
    expect(error?.code).toBe('QG_ERR_CONNECT_FAILED');
    expect(error?.message).toMatch(/giving up after 2 attempts/);
    expect(gw.requests).toHaveLength(3);
  });

  it('stops at once with QG_ERR_TLS (exit 2) when the gateway certificate does not verify: retrying cannot fix it', async () => {
    const gw = new ScriptedGateway();
    gw.refuse = new QuicgateError('QG_ERR_TLS', 'server certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    const { done } = makeClient(gw, new FakeClock());
    const error = await done;
    expect(error?.code).toBe('QG_ERR_TLS');
    expect(exitCodeFor(error)).toBe(EXIT_USAGE);
    expect(gw.requests).toHaveLength(1);
  });

  it('after a local address change, keeps a path that still answers and reconnects at once (no backoff) on one that does not', async () => {
    const clock = new FakeClock();
    const gw = new ScriptedGateway();
    let changed: (() => void) | null = null;
    let watching = 0;
    const watch: PathWatch = (onChange) => {
      changed = onChange;
      watching++;
      return () => void watching--;
    };
    const { client: c } = makeClient(gw, clock, CONFIG, watch);
    await until(() => c.state.kind === 'up' && watching === 1, 'tunnel up');
    // QUIC migrated (or the old path still works): the probe is answered, nothing happens.
    changed!();
    await until(() => gw.controls[0]!.some((m) => m.type === 'keepalive'), 'probe sent');
    clock.advance(PATH_PROBE_MS);
    expect(c.state.kind).toBe('up');
    expect(gw.pairs).toHaveLength(1);

    // The old path is gone: no answer within the probe, a reconnect follows without a backoff delay.
    gw.answerKeepalives = false;
    changed!();
    clock.advance(PATH_PROBE_MS);
    await until(() => gw.pairs.length === 2 && c.state.kind === 'up', 'reconnected without waiting');
    expect(gw.requests[1]!.resume).toEqual({ sessionId: 's1', secret: 'secret-of-s1' });
    expect(watching).toBe(1); // the first connection's watch was removed
  });

  it('closes the session cleanly on stop(): the gateway sees client_closed', async () => {
    const gw = new ScriptedGateway();
    const { client: c, done } = makeClient(gw, new FakeClock());
    await until(() => c.state.kind === 'up', 'tunnel up');
    await c.stop();
    expect(await done).toBeNull();
    expect((await gw.pairs[0]!.server.closed).reason).toBe('client_closed');
    client = null;
  });

  it('maps the assignment to TUN settings for both families', () => {
    const a = { ...assignment(), ipv6: { address: '2001:db8:1::7', prefix: 64, gateway: '2001:db8:1::1' }, routes: ['::/0'] };
    expect(clientTunSettings(CONFIG, a, 16000)).toEqual({
      name: 'qgc0',
      mtu: 1400,
      addresses: [{ cidr: '198.18.0.7/16' }, { cidr: '2001:db8:1::7/64' }],
      routes: ['::/1', '8000::/1'],
      txQueueLen: 4096,
      offload: true,
    });
    expect(clientTunSettings({ ...CONFIG, tunOffload: false }, a, 16000).offload).toBe(false);
  });

  it("lowers the TUN MTU to what this side's datagrams carry whole, never below the IPv6 minimum", () => {
    const v4only = { ...assignment(), mtu: 1211 };
    // HTTP/3: the gateway's datagrams carry 1211-byte packets, the client's 1209.
    expect(clientTunSettings(CONFIG, v4only, 1211).mtu).toBe(1209);
    expect(clientTunSettings(CONFIG, { ...v4only, mtu: 1100 }, 1211).mtu).toBe(1100);
    const dual = { ...assignment(), mtu: 1280, ipv6: { address: '2001:db8:1::7', prefix: 64, gateway: '2001:db8:1::1' } };
    // IPv6 needs 1280 on the device; IPv4 routes get 1209, so IPv4 TCP segments fit one datagram whole.
    expect(clientTunSettings(CONFIG, dual, 1211)).toMatchObject({ mtu: 1280, ipv4Mtu: 1209 });
    expect(clientTunSettings(CONFIG, dual, 16000)).not.toHaveProperty('ipv4Mtu');
  });
});
