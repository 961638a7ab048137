import { beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { hashPassword } from '../../src/config/password.js';
import type { ServerConfig, UserConfig } from '../../src/config/types.js';
import type { EndReason, RejectReason, Session } from '../../src/gateway/session.js';
import { SessionManager } from '../../src/gateway/sessions.js';
import type { ConnectRequest } from '../../src/transport/types.js';
import { serverConfig, sessionLimits, testPasswordHash, userConfig } from '../support/config-fixture.js';
import { FakeConnection } from '../support/fake-connection.js';
import { captureLog, type CapturedLog } from '../support/log-capture.js';
import { codeOf } from '../support/errors.js';
import { settle } from '../support/wait.js';

let hashes: Record<string, string> = {};
beforeAll(async () => {
  const names = ['alice', 'bob', 'carol', 'dave', 'u0', 'u1', 'u2', 'u3', 'u4'];
  hashes = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await testPasswordHash(`pw-${n}`)] as const)));
});

function user(name: string, overrides: Partial<UserConfig> = {}): UserConfig {
  return userConfig(name, { passwordHash: hashes[name] ?? '', ...overrides });
}

function request(name: string, overrides: Partial<ConnectRequest> = {}): ConnectRequest {
  return {
    user: name,
    password: `pw-${name}`,
    sourceAddress: '192.0.2.10',
    peer: '192.0.2.10:40000',
    previousAddresses: [],
    clientVersion: 'test',
    resume: null,
    transport: 'memory',
    ...overrides,
  };
}

interface Harness {
  readonly clock: FakeClock;
  readonly log: CapturedLog;
  readonly manager: SessionManager;
  readonly closed: Array<{ session: Session; reason: EndReason; message: string | undefined }>;
  readonly rejected: Array<{ user: string; source: string; reason: RejectReason }>;
  /** authenticate + open with a fresh FakeConnection. */
  connect(name: string, overrides?: Partial<ConnectRequest>): Promise<{ session: Session; connection: FakeConnection }>;
}

function harness(config: Partial<ServerConfig>): Harness {
  const clock = new FakeClock();
  const log = captureLog();
  let next = 0;
  const manager = new SessionManager({ config: serverConfig(config), logger: log.logger, clock, newId: () => `s${++next}` });
  manager.start();
  const closed: Harness['closed'] = [];
  const rejected: Harness['rejected'] = [];
  manager.onClosed((session, reason, message) => closed.push({ session, reason, message }));
  manager.onRejected((u, source, reason) => rejected.push({ user: u, source, reason }));
  return {
    clock,
    log,
    manager,
    closed,
    rejected,
    async connect(name, overrides = {}) {
      const req = request(name, overrides);
      const admission = await manager.authenticate(req);
      if (!admission.ok) throw new Error(`admission refused: ${admission.code}`);
      const connection = new FakeConnection(req.peer);
      return { session: manager.open(connection, req), connection };
    },
  };
}



describe('SessionManager.authenticate', () => {
  it('admits a known user with the right password', async () => {
    const h = harness({ users: [user('alice')] });
    expect(await h.manager.authenticate(request('alice'))).toEqual({ ok: true, user: 'alice' });
    h.manager.closeAll();
  });

  it('answers an unknown user and a wrong password identically (401 auth_failed)', async () => {
    const h = harness({ users: [user('alice')] });
    const wrong = await h.manager.authenticate(request('alice', { password: 'nope' }));
    const unknown = await h.manager.authenticate(request('mallory'));
    expect(wrong).toEqual({ ok: false, status: 401, code: 'auth_failed', message: expect.any(String) });
    expect(unknown).toEqual(wrong);
    expect(h.manager.stats().rejections.auth_failed).toBe(2);
    expect(h.rejected).toEqual([
      { user: 'alice', source: '192.0.2.10', reason: 'auth_failed' },
      { user: 'mallory', source: '192.0.2.10', reason: 'auth_failed' },
    ]);
    h.manager.closeAll();
  });

  it('takes about as long for an unknown user as for a wrong password (both run scrypt)', async () => {
    // Production-strength hash, as the decoy for unknown users uses the default parameters too.
    const realHash = await hashPassword('pw-alice');
    const h = harness({ users: [userConfig('alice', { passwordHash: realHash })], authAttempts: { perSourcePerMinute: 0 } });
    const time = async (req: ConnectRequest): Promise<number> => {
      const start = performance.now();
      await h.manager.authenticate(req);
      return performance.now() - start;
    };
    const wrong: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 3; i++) {
      wrong.push(await time(request('alice', { password: 'nope' })));
      unknown.push(await time(request('mallory')));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
    const ratio = median(unknown) / median(wrong);
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(2);
    h.manager.closeAll();
  });

  it('tells a disabled user so (403) only when the password is right', async () => {
    const h = harness({ users: [user('alice', { disabled: true })] });
    expect(await h.manager.authenticate(request('alice'))).toMatchObject({ ok: false, status: 403, code: 'user_disabled' });
    expect(await h.manager.authenticate(request('alice', { password: 'x' }))).toMatchObject({ ok: false, status: 401, code: 'auth_failed' });
    h.manager.closeAll();
  });

  it('throttles a source over its budget (429 throttled) without affecting other sources', async () => {
    const h = harness({ users: [user('alice')], authAttempts: { perSourcePerMinute: 3 } });
    for (let i = 0; i < 3; i++) expect((await h.manager.authenticate(request('alice', { password: 'guess' }))).ok).toBe(false);
    expect(await h.manager.authenticate(request('alice'))).toMatchObject({ ok: false, status: 429, code: 'throttled' });
    expect(await h.manager.authenticate(request('alice', { sourceAddress: '192.0.2.99' }))).toEqual({ ok: true, user: 'alice' });
    expect(h.manager.stats().rejections).toMatchObject({ throttled: 1, auth_failed: 3 });
    h.clock.advance(60_000);
    expect(await h.manager.authenticate(request('alice'))).toEqual({ ok: true, user: 'alice' });
    h.manager.closeAll();
  });

  it('counts only failed attempts: right passwords from one address (a NAT) are never throttled', async () => {
    const h = harness({ users: [user('alice'), user('bob')], authAttempts: { perSourcePerMinute: 3 } });
    for (let i = 0; i < 10; i++) {
      expect(await h.manager.authenticate(request(i % 2 === 0 ? 'alice' : 'bob'))).toMatchObject({ ok: true });
    }
    for (let i = 0; i < 3; i++) expect((await h.manager.authenticate(request('alice', { password: 'guess' }))).ok).toBe(false);
    expect(await h.manager.authenticate(request('bob'))).toMatchObject({ ok: false, status: 429, code: 'throttled' });
    expect(h.manager.stats().rejections).toMatchObject({ throttled: 1, auth_failed: 3 });
    h.manager.closeAll();
  });
});

describe('SessionManager limits', () => {
  it('rejects over the per-user limit with policy reject (429 user_limit), at authenticate and at open', async () => {
    const h = harness({ users: [user('alice', { maxSessions: 2 }), user('bob')], limits: sessionLimits({ atLimit: 'reject' }) });
    await h.connect('alice');
    await h.connect('alice');
    expect(await h.manager.authenticate(request('alice'))).toMatchObject({ ok: false, status: 429, code: 'user_limit' });
    expect(codeOf(() => h.manager.open(new FakeConnection(), request('alice')))).toBe('QG_ERR_USER_LIMIT');
    expect(h.manager.size).toBe(2);
    expect((await h.connect('bob')).session.user).toBe('bob');
    expect(h.manager.stats().rejections.user_limit).toBe(2);
    h.manager.closeAll();
  });

  it('uses the server default per-user limit when the user has none', async () => {
    const h = harness({ users: [user('alice')], limits: sessionLimits({ maxSessionsPerUser: 1 }) });
    await h.connect('alice');
    expect(await h.manager.authenticate(request('alice'))).toMatchObject({ code: 'user_limit' });
    h.manager.closeAll();
  });

  it("replace_oldest closes the user's oldest session with reason replaced", async () => {
    const h = harness({ users: [user('alice', { maxSessions: 2 })], limits: sessionLimits({ atLimit: 'replace_oldest', maxTotalSessions: 2 }) });
    const first = await h.connect('alice');
    const second = await h.connect('alice');
    const third = await h.connect('alice'); // total limit is 2 as well: replacing keeps the total
    expect(first.connection.closeCalls).toEqual([{ reason: 'replaced', message: expect.any(String) }]);
    expect(first.session.state).toMatchObject({ kind: 'closed', reason: 'replaced' });
    expect(second.connection.closeCalls).toEqual([]);
    expect(h.manager.list().map((s) => s.id)).toEqual([second.session.id, third.session.id]);
    expect(h.manager.stats().ended.replaced).toBe(1);
    // The replaced session's addresses went to the new one (the user's last address).
    expect(third.session.ipv4).toBe(first.session.ipv4);
    h.manager.closeAll();
  });

  it('rejects over the total limit (503 server_limit)', async () => {
    const h = harness({ users: [user('alice'), user('bob'), user('carol')], limits: sessionLimits({ maxTotalSessions: 2 }) });
    await h.connect('alice');
    await h.connect('bob');
    expect(await h.manager.authenticate(request('carol'))).toMatchObject({ ok: false, status: 503, code: 'server_limit' });
    expect(codeOf(() => h.manager.open(new FakeConnection(), request('carol')))).toBe('QG_ERR_SERVER_LIMIT');
    h.manager.closeAll();
  });

  it('throws QG_ERR_POOL_EXHAUSTED and records pool_exhausted when no address is left, keeping nothing', async () => {
    const h = harness({
      users: [user('alice'), user('bob')],
      networks: { ipv4: { cidr: '198.18.0.0/30', gateway: '198.18.0.1' }, ipv6: null },
    });
    const a = await h.connect('alice');
    expect(a.session.ipv4).toBe('198.18.0.2');
    expect(a.session.ipv6).toBeNull();
    expect(codeOf(() => h.manager.open(new FakeConnection(), request('bob')))).toBe('QG_ERR_POOL_EXHAUSTED');
    expect(h.rejected).toContainEqual({ user: 'bob', source: '192.0.2.10', reason: 'pool_exhausted' });
    expect(h.manager.stats()).toMatchObject({ sessions: 1, users: 1, rejections: { pool_exhausted: 1 } });
    expect(h.manager.registry.has('bob')).toBe(false);
    h.manager.kill(a.session.id);
    expect((await h.connect('bob')).session.ipv4).toBe('198.18.0.2');
    h.manager.closeAll();
  });
});

describe('SessionManager timeouts', () => {
  it('closes an idle session through the transport with reason idle_timeout', async () => {
    const h = harness({ users: [user('alice')], limits: sessionLimits({ idleTimeoutMs: 30_000 }) });
    const { session, connection } = await h.connect('alice');
    h.clock.advance(29_000);
    expect(session.state.kind).toBe('open');
    h.clock.advance(2_000);
    expect(connection.closeCalls).toEqual([{ reason: 'idle_timeout', message: expect.any(String) }]);
    expect(session.state).toMatchObject({ kind: 'closed', reason: 'idle_timeout' });
    expect(h.manager.get(session.id)).toBeUndefined();
    expect(h.manager.pool.isAllocated(session.ipv4!)).toBe(false);
    expect(h.closed.map((c) => c.reason)).toEqual(['idle_timeout']);
    h.manager.closeAll();
  });

  it('keepalive touches (and packet activity) keep a session alive', async () => {
    const h = harness({ users: [user('alice')], limits: sessionLimits({ idleTimeoutMs: 30_000 }) });
    const { session, connection } = await h.connect('alice');
    for (let i = 0; i < 10; i++) {
      h.clock.advance(20_000);
      h.manager.touch(session);
    }
    h.clock.advance(20_000);
    session.lastActivity = h.clock.now(); // what the forwarding path does per batch
    h.clock.advance(20_000);
    expect(session.state.kind).toBe('open');
    expect(connection.closeCalls).toEqual([]);
    h.clock.advance(11_000);
    expect(session.state).toMatchObject({ kind: 'closed', reason: 'idle_timeout' });
    h.manager.closeAll();
  });

  it('ends a session at its maximum lifetime with session_timeout, however active', async () => {
    const h = harness({ users: [user('alice')], limits: sessionLimits({ idleTimeoutMs: 30_000, sessionTimeoutMs: 60_000 }) });
    const { session, connection } = await h.connect('alice');
    for (let i = 0; i < 5; i++) {
      h.clock.advance(10_000);
      h.manager.touch(session);
    }
    expect(session.state.kind).toBe('open');
    h.clock.advance(11_000);
    expect(connection.closeCalls).toEqual([{ reason: 'session_timeout', message: expect.any(String) }]);
    h.manager.closeAll();
  });
});

describe('SessionManager checker lifecycle', () => {
  it('checks for expired sessions only between start() and stop()', async () => {
    const h = harness({ users: [user('alice')], limits: sessionLimits({ idleTimeoutMs: 5_000 }) });
    const timersBefore = h.clock.pendingTimers;
    h.manager.stop();
    expect(h.clock.pendingTimers).toBe(timersBefore - 1);
    const { session } = await h.connect('alice');
    h.clock.advance(60_000);
    expect(session.state.kind).toBe('open');
    h.manager.start();
    h.manager.start(); // idempotent: one checker
    h.clock.advance(1_000);
    expect(session.state).toMatchObject({ kind: 'closed', reason: 'idle_timeout' });
    expect(h.manager.stats().ended.idle_timeout).toBe(1);
    h.manager.closeAll();
  });
});

describe('SessionManager ending', () => {
  it('ends a session with client_closed when the client goes away', async () => {
    const h = harness({ users: [user('alice', { bandwidth: 1_000_000 })] });
    const { session, connection } = await h.connect('alice');
    expect(session.bucket).not.toBeNull();
    connection.clientLeaves({ reason: 'client_closed', message: 'bye' });
    await settle();
    expect(session.state).toMatchObject({ kind: 'closed', reason: 'client_closed', message: 'bye' });
    expect(h.manager.size).toBe(0);
    expect(h.manager.registry.bucketOf('alice')).toBeNull();
    expect(h.manager.pool.stats().ipv4?.inUse).toBe(0);
    h.manager.closeAll();
  });

  it('kills by id and by user; an unknown id is QG_ERR_SESSION_NOT_FOUND', async () => {
    const h = harness({ users: [user('alice'), user('bob')] });
    const a1 = await h.connect('alice');
    const a2 = await h.connect('alice');
    const b = await h.connect('bob');
    expect(h.manager.kill(b.session.id).state).toMatchObject({ kind: 'closed', reason: 'admin_kill' });
    expect(b.connection.closeCalls).toEqual([{ reason: 'admin_kill' }]);
    expect(codeOf(() => h.manager.kill(b.session.id))).toBe('QG_ERR_SESSION_NOT_FOUND');
    expect(h.manager.killUser('alice', 'quota_exceeded', 'quota spent')).toBe(2);
    expect(a1.connection.closeCalls).toEqual([{ reason: 'quota_exceeded', message: 'quota spent' }]);
    expect(a2.connection.closeCalls).toEqual([{ reason: 'quota_exceeded', message: 'quota spent' }]);
    expect(h.manager.killUser('nobody')).toBe(0);
    expect(h.manager.size).toBe(0);
    h.manager.closeAll();
  });

  it('releases once when a session ends twice (timeout racing the transport close)', async () => {
    const h = harness({
      users: [user('alice'), user('bob')],
      networks: { ipv4: { cidr: '198.18.0.0/30', gateway: '198.18.0.1' }, ipv6: null },
      limits: sessionLimits({ idleTimeoutMs: 10_000 }),
    });
    const a = await h.connect('alice');
    // The client goes away at the same moment the idle checker runs.
    h.clock.advance(10_000);
    a.connection.clientLeaves({ reason: 'client_closed' });
    // bob takes the freed (only) address before alice's close promise is handled.
    const b = await h.connect('bob');
    expect(b.session.ipv4).toBe(a.session.ipv4);
    await settle();
    expect(h.manager.end(a.session, 'admin_kill')).toBe(false);
    expect(h.closed.map((c) => [c.session.user, c.reason])).toEqual([['alice', 'idle_timeout']]);
    expect(h.manager.pool.isAllocated(b.session.ipv4!)).toBe(true); // not released a second time
    expect(h.manager.stats().ended).toMatchObject({ idle_timeout: 1, client_closed: 0, admin_kill: 0 });
    expect(h.manager.registry.connectionsOf('bob').size).toBe(1);
    h.manager.closeAll();
  });

  it('survives listeners that throw, and logs them', async () => {
    const h = harness({ users: [user('alice')] });
    h.manager.onOpened(() => {
      throw new Error('opened boom');
    });
    h.manager.onClosed(() => {
      throw new Error('closed boom');
    });
    const { session } = await h.connect('alice');
    expect(h.manager.get(session.id)).toBe(session);
    h.manager.kill(session.id);
    expect(h.manager.size).toBe(0);
    expect(h.manager.pool.stats().ipv4?.inUse).toBe(0);
    expect(h.closed).toHaveLength(1); // the other listener still ran
    expect(h.log.matching('listener threw')).toHaveLength(2);
    expect(h.manager.stats().listenerErrors).toBe(2);
    h.manager.closeAll();
  });

  it('sets a session up and releases it in one place, in reverse order: address, bucket, data plane; whatever ends it', async () => {
    const h = harness({ users: [user('alice', { bandwidth: 1_000_000 })], limits: sessionLimits({ idleTimeoutMs: 10_000 }) });
    const steps: string[] = [];
    h.manager.setDataPlane({
      attach(session) {
        // Attached after its address and bucket exist.
        steps.push(`attach addr=${h.manager.pool.isAllocated(session.ipv4!)} bucket=${h.manager.registry.bucketOf('alice') !== null}`);
      },
      detach(session) {
        // Detached before the address goes back to the pool and the bucket is dropped.
        steps.push(`detach addr=${h.manager.pool.isAllocated(session.ipv4!)} bucket=${h.manager.registry.bucketOf('alice') !== null}`);
      },
    });
    h.manager.onClosed((session) => steps.push(`closed-listener addr=${h.manager.pool.isAllocated(session.ipv4!)}`));
    const ends: Array<(s: Session) => void> = [
      (s) => h.manager.kill(s.id),
      () => h.clock.advance(10_000),
      (s) => (s.connection as FakeConnection).clientLeaves({ reason: 'client_closed' }),
      () => h.manager.closeAll(),
    ];
    for (const end of ends) {
      const { session } = await h.connect('alice');
      end(session);
      await settle();
      expect(steps.splice(0)).toEqual(['attach addr=true bucket=true', 'detach addr=true bucket=true', 'closed-listener addr=false']);
    }
    expect(h.manager.stats().ended).toMatchObject({ admin_kill: 1, idle_timeout: 1, client_closed: 1, server_shutdown: 1 });
  });

  it('releases everything when the data plane fails: on attach (open throws, nothing kept) and on detach (logged, rest released)', async () => {
    const h = harness({ users: [user('alice', { bandwidth: 1_000_000 })] });
    let failAttach = true;
    h.manager.setDataPlane({
      attach() {
        if (failAttach) throw new Error('route add failed');
      },
      detach() {
        throw new Error('route remove failed');
      },
    });
    await expect(h.connect('alice')).rejects.toThrow('route add failed');
    expect(h.manager.size).toBe(0);
    expect(h.manager.pool.stats().ipv4?.inUse).toBe(0);
    expect(h.manager.registry.bucketOf('alice')).toBeNull();
    failAttach = false;
    const { session } = await h.connect('alice');
    h.manager.kill(session.id);
    expect(h.manager.pool.isAllocated(session.ipv4!)).toBe(false);
    expect(h.manager.registry.connectionCount).toBe(0);
    expect(h.log.matching('release step failed')).toHaveLength(1);
    h.manager.closeAll();
  });

  it('closeAll ends everything with server_shutdown, stops its timers and refuses new sessions', async () => {
    const h = harness({ users: [user('alice'), user('bob')] });
    const a = await h.connect('alice');
    await h.connect('bob');
    expect(h.manager.closeAll()).toBe(2);
    expect(a.connection.closeCalls).toEqual([{ reason: 'server_shutdown' }]);
    expect(h.closed.map((c) => c.reason)).toEqual(['server_shutdown', 'server_shutdown']);
    expect(h.clock.pendingTimers).toBe(0);
    expect(codeOf(() => h.manager.open(new FakeConnection(), request('alice')))).toBe('QG_ERR_CLOSED');
  });
});

describe('SessionManager stats and queries', () => {
  it('counts sessions, users, per-user sessions, rejections and ends', async () => {
    const h = harness({ users: [user('alice'), user('bob'), user('carol', { disabled: true })] });
    const a1 = await h.connect('alice');
    await h.connect('alice');
    await h.connect('bob');
    await h.manager.authenticate(request('carol'));
    await h.manager.authenticate(request('nobody'));
    h.manager.kill(a1.session.id);
    const stats = h.manager.stats();
    expect(stats).toMatchObject({ sessions: 2, users: 2, perUser: { alice: 1, bob: 1 }, opened: 3 });
    expect(stats.rejections).toMatchObject({ user_disabled: 1, auth_failed: 1, user_limit: 0 });
    expect(stats.ended).toMatchObject({ admin_kill: 1 });
    expect(stats.pool.ipv4?.inUse).toBe(2);
    expect(h.manager.list().map((s) => s.user)).toEqual(['alice', 'bob']);
    expect(h.manager.sessionsOf('alice')).toHaveLength(1);
    h.manager.closeAll();
  });

  it('opens a session with its addresses, peer, transport, times and the shared bucket', async () => {
    const h = harness({ users: [user('alice', { bandwidth: 2_000_000, burst: 100_000 })] });
    h.clock.advance(5_000);
    const { session, connection } = await h.connect('alice');
    const other = await h.connect('alice');
    expect(session).toMatchObject({
      id: 's1',
      user: 'alice',
      connection,
      transport: 'memory',
      peer: '192.0.2.10:40000',
      ipv4: '198.18.0.2',
      ipv6: '2001:db8:1::2',
      startedAt: h.clock.wallNow(),
      startedMono: 5_000,
      lastActivity: 5_000,
      state: { kind: 'open' },
    });
    expect(session.bucket?.rate).toBe(2_000_000);
    expect(session.bucket?.burst).toBe(100_000);
    expect(other.session.bucket).toBe(session.bucket);
    h.manager.closeAll();
  });

});

describe('SessionManager.applyUsers (reload)', () => {
  it('changes a live shared bucket in place, and repoints sessions when going limited <-> unlimited', async () => {
    const h = harness({ users: [user('alice', { bandwidth: 1_000_000 }), user('bob')] });
    const a1 = await h.connect('alice');
    const a2 = await h.connect('alice');
    const b = await h.connect('bob');
    const bucket = a1.session.bucket;
    const defaults = { defaultBandwidth: null, limits: sessionLimits() };

    h.manager.applyUsers([user('alice', { bandwidth: 3_000_000 }), user('bob')], defaults);
    expect(a1.session.bucket).toBe(bucket);
    expect(bucket?.rate).toBe(3_000_000);

    h.manager.applyUsers([user('alice'), user('bob', { bandwidth: 250_000 })], defaults);
    expect(a1.session.bucket).toBeNull();
    expect(a2.session.bucket).toBeNull();
    expect(b.session.bucket?.rate).toBe(250_000);
    expect(h.manager.registry.bucketOf('bob')).toBe(b.session.bucket);

    h.manager.applyUsers([user('alice', { bandwidth: 800_000 }), user('bob', { bandwidth: 800_000 })], defaults);
    expect(a1.session.bucket?.rate).toBe(800_000);
    expect(a2.session.bucket).toBe(a1.session.bucket);
    expect(b.session.bucket?.rate).toBe(800_000);
    expect(b.session.bucket).not.toBe(a1.session.bucket);
    h.manager.closeAll();
  });

  it('closes sessions of removed and disabled users with user_removed; new limits apply to new sessions', async () => {
    const h = harness({ users: [user('alice'), user('bob'), user('carol')] });
    const a = await h.connect('alice');
    const b = await h.connect('bob');
    const c1 = await h.connect('carol');
    const c2 = await h.connect('carol');
    h.manager.applyUsers([user('bob', { disabled: true }), user('carol', { maxSessions: 1 })], {
      defaultBandwidth: null,
      limits: sessionLimits(),
    });
    expect(a.connection.closeCalls).toEqual([{ reason: 'user_removed', message: 'user removed from config' }]);
    expect(b.connection.closeCalls).toEqual([{ reason: 'user_removed', message: 'user disabled' }]);
    expect(c1.session.state.kind).toBe('open');
    expect(c2.session.state.kind).toBe('open');
    expect(await h.manager.authenticate(request('carol'))).toMatchObject({ code: 'user_limit' });
    expect(await h.manager.authenticate(request('alice'))).toMatchObject({ code: 'auth_failed' });
    h.manager.closeAll();
  });

  it('refuses a reload with a bad static address and keeps the running users', async () => {
    const h = harness({ users: [user('alice')] });
    const a = await h.connect('alice');
    expect(codeOf(() => h.manager.applyUsers([user('bob', { staticAddresses: ['198.19.9.9'] })], { defaultBandwidth: null, limits: sessionLimits() }))).toBe(
      'QG_ERR_ADDRESS_UNAVAILABLE',
    );
    expect(a.session.state.kind).toBe('open');
    expect((await h.manager.authenticate(request('alice'))).ok).toBe(true);
    h.manager.closeAll();
  });
});

/** Deterministic pseudo-random numbers (LCG). */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe('SessionManager under concurrency', () => {
  it('20 connections over 5 users (3 limited), opened and ended concurrently, leave nothing behind', async () => {
    for (const seed of [7, 99, 2026]) {
      const random = lcg(seed);
      const pause = async (): Promise<void> => {
        const steps = Math.floor(random() * 4);
        for (let i = 0; i < steps; i++) await (random() < 0.5 ? Promise.resolve() : settle());
      };
      const users = ['u0', 'u1', 'u2', 'u3', 'u4'].map((n, i) => user(n, { bandwidth: i % 2 === 0 ? 1_000_000 : null }));
      const h = harness({ users, limits: sessionLimits({ maxSessionsPerUser: 4 }), authAttempts: { perSourcePerMinute: 1000 } });
      let shared = 0;
      const life = async (i: number): Promise<void> => {
        const name = `u${i % 5}`;
        await pause();
        const { session, connection } = await h.connect(name, { sourceAddress: `192.0.2.${i}` });
        await pause();
        const peers = h.manager.sessionsOf(name);
        if (peers.length > 1) {
          shared++;
          for (const p of peers) expect(p.bucket).toBe(session.bucket);
        }
        expect(session.bucket === null).toBe(Number(name.slice(1)) % 2 === 1);
        await pause();
        const way = i % 3;
        if (way === 0) connection.clientLeaves();
        else if (way === 1) h.manager.kill(session.id);
        else {
          // Both at once: the client leaves while an admin kills it.
          connection.clientLeaves();
          h.manager.end(session, 'admin_kill');
        }
        await pause();
      };
      await Promise.all(Array.from({ length: 20 }, (_, i) => life(i)));
      await settle();
      expect(shared).toBeGreaterThan(0);
      expect(h.manager.size).toBe(0);
      expect(h.manager.registry.connectionCount).toBe(0);
      expect(h.manager.registry.userCount).toBe(0);
      expect(h.manager.registry.bucketCount).toBe(0);
      const pool = h.manager.pool.stats();
      expect(pool.ipv4?.inUse).toBe(0);
      expect(pool.ipv6?.inUse).toBe(0);
      expect(h.closed).toHaveLength(20);
      const ended = h.manager.stats().ended;
      expect(ended.client_closed + ended.admin_kill).toBe(20);
      h.manager.closeAll();
    }
  });
});
