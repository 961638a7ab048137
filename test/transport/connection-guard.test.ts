/**
 * The connection guard (src/transport/connection-guard.ts): its bookkeeping on fake sockets and a fake clock,
 * then the real tunnel listener on 127.0.0.1 with raw TCP, TLS and HTTP/2 clients: idle connections are closed
 * by the deadline and counted, limits reset connections at accept, a refused CONNECT closes its connection,
 * a malformed :path is answered 400 (it hung before), and the library internal the guard needs is where
 * the pinned version keeps it.
 */
import { EventEmitter } from 'node:events';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { ensureCertificates, type CertificateMaterial } from '../../src/transport/certs.js';
import { ConnectionGuard } from '../../src/transport/connection-guard.js';
import type { Admission } from '../../src/transport/types.js';
import { credentialHeaders } from '../../src/transport/wt-auth.js';
import { connectTunnel } from '../../src/transport/wt-client.js';
import { findNodeHttp2Server, loadWebTransportLibrary } from '../../src/transport/wt-lib.js';
import { createTunnelListener, type SourceThrottle, type WebTransportListener } from '../../src/transport/wt-server.js';

const logger = silentLogger();

class FakeSocket extends EventEmitter {
  destroyed = false;
  resets = 0;
  constructor(
    readonly remoteAddress: string,
    readonly remotePort: number,
  ) {
    super();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
  resetAndDestroy(): void {
    this.resets++;
    this.destroy();
  }
}

function fakeGuard(overrides: { maxPending?: number; maxPendingPerSource?: number; blocked?: Set<string> } = {}) {
  const clock = new FakeClock();
  const server = new EventEmitter();
  const guard = new ConnectionGuard({
    handshakeTimeoutMs: 1000,
    maxPending: overrides.maxPending ?? 10,
    maxPendingPerSource: overrides.maxPendingPerSource ?? 3,
    sourceBlocked: (a) => overrides.blocked?.has(a) ?? false,
    logger,
    clock,
  });
  guard.attach(server as never);
  let port = 40_000;
  const accept = (address = '192.0.2.7'): FakeSocket => {
    const socket = new FakeSocket(address, port++);
    server.emit('connection', socket);
    return socket;
  };
  const secure = (raw: FakeSocket): FakeSocket => {
    const tls = new FakeSocket(raw.remoteAddress, raw.remotePort);
    server.emit('secureConnection', tls);
    return tls;
  };
  return { clock, guard, server, accept, secure, peer: (s: FakeSocket) => `${s.remoteAddress}:${s.remotePort}` };
}

describe('ConnectionGuard bookkeeping', () => {
  it('closes a connection without a session at the deadline, by stage', () => {
    const { clock, guard, accept, secure } = fakeGuard();
    const silent = accept();
    const tlsDone = secure(accept());
    clock.advance(999);
    expect(silent.destroyed || tlsDone.destroyed).toBe(false);
    clock.advance(1);
    expect(silent.resets).toBe(1);
    expect(tlsDone.destroyed).toBe(true);
    expect(guard.stats()).toMatchObject({ pending: 0, open: 0, closed: { handshake_timeout: 1, connect_timeout: 1 } });
  });

  it('an admitted connection has no deadline; when its session ends it gets one again (no_session)', () => {
    const { clock, guard, accept, secure, peer } = fakeGuard();
    const raw = accept();
    const tls = secure(raw);
    guard.admitted(peer(raw));
    expect(guard.stats()).toMatchObject({ pending: 0, open: 1 });
    clock.advance(10_000);
    expect(tls.destroyed).toBe(false);
    guard.admitted(peer(raw));
    guard.released(peer(raw));
    clock.advance(10_000);
    expect(tls.destroyed).toBe(false); // one session still on it
    guard.released(peer(raw));
    expect(guard.stats().pending).toBe(1);
    clock.advance(1000);
    expect(tls.destroyed).toBe(true);
    expect(guard.stats()).toMatchObject({ pending: 0, open: 0, closed: { no_session: 1 } });
  });

  it('resets at accept over the per-source and total limits and for blocked sources; counts free again when connections go', () => {
    const { guard, accept } = fakeGuard({ maxPending: 5, maxPendingPerSource: 3, blocked: new Set(['192.0.2.66']) });
    const first = [accept(), accept(), accept()];
    const fourth = accept();
    expect(fourth.resets).toBe(1);
    const other = [accept('192.0.2.8'), accept('192.0.2.8')];
    expect(other.every((s) => !s.destroyed)).toBe(true);
    const overTotal = accept('192.0.2.9');
    expect(overTotal.resets).toBe(1);
    expect(accept('192.0.2.66').resets).toBe(1);
    expect(guard.stats()).toMatchObject({ pending: 5, closed: { limit_source: 1, limit_total: 1, source_blocked: 1 } });
    first[0]!.destroy();
    expect(accept().destroyed).toBe(false);
    // An IPv6 source counts by its /64.
    const v6 = fakeGuard({ maxPendingPerSource: 2 });
    v6.accept('2001:db8:1:2::1');
    v6.accept('2001:db8:1:2::2');
    expect(v6.accept('2001:db8:1:2:ffff::3').resets).toBe(1);
    expect(v6.accept('2001:db8:1:3::1').destroyed).toBe(false);
  });

  it('marks an HTTP/2 session closed before destroying it (the library pings every session unless `closed`)', () => {
    const { clock, server, accept, secure } = fakeGuard();
    const raw = accept();
    secure(raw);
    // The library's ping timer (lib/http2/node/server.js): `if (!session.closed) session.ping(...)`; Node throws
    // ERR_HTTP2_INVALID_SESSION on a ping of a destroyed session.
    const session = {
      closed: false,
      destroyed: false,
      socket: raw,
      close() {
        this.closed = true;
      },
      destroy() {
        this.destroyed = true;
      },
      ping() {
        if (this.destroyed) throw new Error('ERR_HTTP2_INVALID_SESSION');
      },
    };
    server.emit('session', session);
    clock.advance(1000);
    expect(session.destroyed).toBe(true);
    expect(() => {
      if (!session.closed) session.ping();
    }).not.toThrow();
  });

  it('a refused CONNECT closes a connection that carries no session, not one that does', () => {
    const { guard, accept, secure, peer } = fakeGuard();
    const lone = secure(accept());
    guard.refused(peer(lone));
    expect(lone.destroyed).toBe(true);
    const busyRaw = accept();
    const busy = secure(busyRaw);
    guard.admitted(peer(busyRaw));
    guard.refused(peer(busyRaw));
    expect(busy.destroyed).toBe(false);
    expect(guard.stats().closed.refused).toBe(1);
  });
});

describe('ConnectionGuard on the real listener', () => {
  let dir: string;
  let certs: CertificateMaterial;
  let listener: WebTransportListener;
  const blocked = new Set<string>();
  const throttle: SourceThrottle = { admit: async () => true, isBlocked: (a) => blocked.has(a) };
  const admission: Admission = async (r) =>
    r.password === 'right' ? { ok: true, user: r.user } : { ok: false, status: 401, code: 'QG_ERR_AUTH_FAILED', message: 'wrong password' };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'qg-guard-'));
    certs = await ensureCertificates(dir, { names: [] });
    listener = await createTunnelListener({
      host: '127.0.0.1',
      port: 0,
      cert: certs.certPem,
      key: certs.keyPem,
      admission,
      sendQueuePackets: 64,
      logger,
      http3: 'off',
      limits: { handshakeTimeoutMs: 600, maxPending: 50, maxPendingPerSource: 4 },
      throttle,
    });
    listener.onConnection((a) => a.connection.close({ reason: 'server_shutdown' }));
  });

  afterAll(async () => {
    await listener?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Resolves with ms until the server ended the socket (or rejects after `limitMs`). */
  function closedWithin(socket: Socket, limitMs: number): Promise<number> {
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`still open after ${limitMs} ms`));
      }, limitMs);
      socket.on('error', () => {});
      socket.resume(); // read what the server sent (HTTP/2 SETTINGS), or its FIN is never seen
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(Date.now() - started);
      });
    });
  }

  const closedCount = (reason: string): number => listener.connectionStats().closed[reason as 'refused'];

  it('the library keeps its node:http2 server where the guard looks (pinned internals)', async () => {
    const lib = await loadWebTransportLibrary();
    const h2 = new lib.Http2Server({ port: 0, host: '127.0.0.1', secret: 'x'.repeat(32), cert: certs.certPem, privKey: certs.keyPem });
    h2.startServer();
    try {
      expect(findNodeHttp2Server(h2)).not.toBeNull();
      await h2.ready;
    } finally {
      h2.stopServer();
    }
  });

  it('closes idle TCP, TLS h2, TLS http/1.1 and TLS without ALPN connections by the deadline, and counts them', async () => {
    const before = { handshake: closedCount('handshake_timeout'), connect: closedCount('connect_timeout') };
    const tcp = netConnect(listener.port, '127.0.0.1');
    const tlsClients = [['h2'], ['http/1.1'], undefined].map((alpn) =>
      tlsConnect({ port: listener.port, host: '127.0.0.1', ca: certs.caPem, servername: 'localhost', rejectUnauthorized: false, ...(alpn ? { ALPNProtocols: alpn } : {}) }),
    );
    const times = await Promise.all([tcp, ...tlsClients].map((s) => closedWithin(s, 5000)));
    for (const ms of times) expect(ms).toBeLessThan(3000);
    expect(closedCount('handshake_timeout') - before.handshake).toBe(1);
    expect(closedCount('connect_timeout') - before.connect).toBe(3);
    await vi.waitFor(() => expect(listener.connectionStats()).toMatchObject({ pending: 0, open: 0 }));
  });

  it('resets connections over the per-source limit at once, and blocked sources before TLS', async () => {
    const before = closedCount('limit_source');
    const held = Array.from({ length: 4 }, () => netConnect(listener.port, '127.0.0.1'));
    await Promise.all(held.map((s) => new Promise((r) => s.once('connect', r))));
    await vi.waitFor(() => expect(listener.connectionStats().pending).toBe(4));
    const fifth = netConnect(listener.port, '127.0.0.1');
    expect(await closedWithin(fifth, 1000)).toBeLessThan(500);
    expect(closedCount('limit_source') - before).toBe(1);
    // Another source is not affected.
    const other = netConnect({ port: listener.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    await new Promise((r) => other.once('connect', r));
    await vi.waitFor(() => expect(listener.connectionStats().pending).toBe(5));
    blocked.add('127.0.0.3');
    const fromBlocked = netConnect({ port: listener.port, host: '127.0.0.1', localAddress: '127.0.0.3' });
    expect(await closedWithin(fromBlocked, 1000)).toBeLessThan(500);
    expect(closedCount('source_blocked')).toBe(1);
    for (const s of [...held, other]) s.destroy();
    await vi.waitFor(() => expect(listener.connectionStats()).toMatchObject({ pending: 0, open: 0 }));
  });

  it('closes the connection of a refused CONNECT once the refusal is sent', async () => {
    const before = closedCount('refused');
    const refusal = await connectTunnel({
      url: `https://127.0.0.1:${listener.port}`,
      user: 'alice',
      password: 'wrong',
      previousAddresses: [],
      transport: 'h2',
      caPem: certs.caPem,
      sendQueuePackets: 64,
      logger,
      connectTimeoutMs: 5000,
    }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(refusal).toMatchObject({ code: 'QG_ERR_REJECTED', details: { status: 401 } });
    expect(closedCount('refused') - before).toBe(1);
    await vi.waitFor(() => expect(listener.connectionStats()).toMatchObject({ pending: 0, open: 0 }), { timeout: 2000 });
  });

  it('answers a CONNECT whose :path makes new URL() throw with 400 (it went unanswered)', async () => {
    const session: ClientHttp2Session = h2connect(`https://127.0.0.1:${listener.port}`, { ca: certs.caPem, servername: 'localhost', rejectUnauthorized: false });
    session.on('error', () => {});
    try {
      await new Promise((r) => session.once('remoteSettings', r));
      const status = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer within 3 s')), 3000);
        const req = session.request({
          ':method': 'CONNECT',
          ':protocol': 'webtransport',
          ':scheme': 'https',
          ':authority': 'localhost',
          ':path': '/\\[',
          ...credentialHeaders({ user: 'alice', password: 'right', previousAddresses: [], clientVersion: 'test', resume: null }),
        });
        req.on('error', () => {});
        req.once('response', (headers) => {
          clearTimeout(timer);
          resolve(Number(headers[':status']));
        });
      });
      expect(status).toBe(400);
    } finally {
      session.destroy();
    }
  });
});
