/**
 * HTTP/3 session requests without a tunnel are bounded (h3-session-guard.ts): in memory on a FakeClock, and with
 * real QUIC sessions on 127.0.0.1 (a second request from a source already setting one up is refused before its
 * credentials are checked; a session that never opens its control stream is closed at the handshake timeout).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { isQuicgateError, type QuicgateError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { ensureCertificates, type CertificateMaterial } from '../../src/transport/certs.js';
import { H3SessionGuard, type H3Pending } from '../../src/transport/h3-session-guard.js';
import type { AcceptedConnection, Admission } from '../../src/transport/types.js';
import { credentialPath, rejectedError } from '../../src/transport/wt-auth.js';
import { connectTunnel, type ConnectTunnelOptions } from '../../src/transport/wt-client.js';
import { loadWebTransportLibrary } from '../../src/transport/wt-lib.js';
import { createTunnelListener, type WebTransportListener } from '../../src/transport/wt-server.js';

const logger = silentLogger();

describe('H3SessionGuard (fake clock)', () => {
  const make = (blocked: (a: string) => boolean = () => false) => {
    const clock = new FakeClock();
    return { clock, guard: new H3SessionGuard({ handshakeTimeoutMs: 1000, maxPending: 3, maxPendingPerSource: 2, sourceBlocked: blocked, logger, clock }) };
  };
  const pending = (x: H3Pending | string): H3Pending => {
    if (typeof x === 'string') throw new Error(`refused: ${x}`);
    return x;
  };

  it('bounds pending requests per source (IPv6 /64) and in total, and frees them when set up or ended', () => {
    const { guard } = make();
    const a = pending(guard.begin('2001:db8:1::1'));
    pending(guard.begin('2001:db8:1::2'));
    expect(guard.begin('2001:db8:1::3')).toBe('limit_source'); // the same /64
    pending(guard.begin('192.0.2.7'));
    expect(guard.begin('192.0.2.8')).toBe('limit_total');
    a.established();
    a.ended(); // idempotent
    expect(guard.stats().pending).toBe(2);
    pending(guard.begin('2001:db8:1::3'));
    expect(guard.stats().closed).toEqual({ connect_timeout: 0, limit_total: 1, limit_source: 1, source_blocked: 0 });
  });

  it('refuses a blocked source before anything else', () => {
    const { guard } = make((a) => a === '192.0.2.66');
    expect(guard.begin('192.0.2.66')).toBe('source_blocked');
    expect(guard.stats()).toMatchObject({ pending: 0, closed: { source_blocked: 1 } });
  });

  it('closes a session still without a tunnel at the deadline, once, and not one set up in time', () => {
    const { clock, guard } = make();
    const slow = pending(guard.begin('192.0.2.1'));
    const quick = pending(guard.begin('192.0.2.2'));
    const closed: string[] = [];
    slow.attach(() => closed.push('slow'));
    quick.attach(() => closed.push('quick'));
    clock.advance(500);
    quick.established();
    clock.advance(600);
    expect(closed).toEqual(['slow']);
    expect(slow.expired).toBe(true);
    expect(guard.stats()).toMatchObject({ pending: 0, closed: { connect_timeout: 1 } });
    // A session that arrives after its deadline is closed as soon as it is attached.
    const late = pending(guard.begin('192.0.2.3'));
    clock.advance(1000);
    late.attach(() => closed.push('late'));
    expect(closed).toEqual(['slow', 'late']);
  });
});

describe('HTTP/3 session requests against a real listener', () => {
  let dir: string;
  let certs: CertificateMaterial;
  let listener: WebTransportListener;
  const accepted: AcceptedConnection[] = [];
  let releaseSlow: () => void = () => {};
  let slowSeen = false;
  const admission: Admission = async (request) => {
    if (request.password === 'slow') {
      slowSeen = true;
      await new Promise<void>((resolve) => (releaseSlow = resolve));
    }
    return { ok: true, user: request.user };
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'qg-h3guard-'));
    certs = await ensureCertificates(dir, { names: [] });
    listener = await createTunnelListener({
      host: '127.0.0.1',
      port: 0,
      cert: certs.certPem,
      key: certs.keyPem,
      admission,
      sendQueuePackets: 256,
      logger,
      http3: 'auto',
      limits: { handshakeTimeoutMs: 1500, maxPending: 16, maxPendingPerSource: 1 },
    });
    listener.onConnection((a) => accepted.push(a));
    expect(listener.kinds).toContain('h3');
  });

  afterAll(async () => {
    for (const a of accepted) a.connection.close({ reason: 'server_shutdown' });
    await listener?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const options = (password: string): ConnectTunnelOptions => ({
    url: `https://127.0.0.1:${listener.port}`,
    user: 'alice',
    password,
    previousAddresses: [],
    transport: 'h3',
    caPem: certs.caPem,
    sendQueuePackets: 256,
    logger,
    connectTimeoutMs: 8000,
  });

  /** The refusal an HTTP/3 client sees (thrown, or as the close of a session it got). */
  async function h3Refusal(password: string): Promise<QuicgateError> {
    let connection;
    try {
      connection = await connectTunnel(options(password));
    } catch (err) {
      if (isQuicgateError(err)) return err;
      throw err;
    }
    const info = await connection.closed;
    expect(info.refused, `closed without a refusal: ${JSON.stringify(info)}`).toBeDefined();
    return rejectedError(info.refused!, 'h3');
  }

  it('refuses a second request from a source that is still setting one up, before its credentials are checked', async () => {
    const first = connectTunnel(options('slow'));
    await vi.waitFor(() => expect(slowSeen).toBe(true), { timeout: 10_000 });
    const err = await h3Refusal('fast');
    expect(err.code).toBe('QG_ERR_REJECTED');
    expect(err.details).toMatchObject({ status: 503, reason: 'QG_ERR_SERVER_LIMIT', message: 'too many sessions being set up; try again later' });
    expect(listener.connectionStats().h3).toMatchObject({ pending: 1, closed: { limit_source: 1 } });
    releaseSlow();
    const client = await first;
    await vi.waitFor(() => expect(listener.connectionStats().h3?.pending).toBe(0));
    client.close({ reason: 'client_closed' });
  });

  it('closes an admitted session that opens no control stream within the handshake timeout', async () => {
    const lib = await loadWebTransportLibrary();
    await lib.quicheLoaded;
    const der = new X509Certificate(certs.certPem).raw;
    const hash = { algorithm: 'sha-256' as const, value: new Uint8Array(createHash('sha256').update(der).digest()) };
    const creds = { user: 'alice', password: 'x', previousAddresses: [], clientVersion: 'test', resume: null };
    const wt = new lib.WebTransport(`https://127.0.0.1:${listener.port}${credentialPath(creds)}`, {
      requireUnreliable: true,
      serverCertificateHashes: [hash],
      quicConnectTimeout: 8000,
      webTransportConnectTimeout: 8000,
    });
    const closed = wt.closed.then(
      (info) => info,
      (err: unknown) => ({ error: String(err) }),
    );
    await wt.ready;
    const openedAt = Date.now();
    const info = await closed;
    const heldMs = Date.now() - openedAt;
    // Closed by the guard (1.5 s), well before the 10 s control-stream deadline that held it before.
    expect(heldMs).toBeLessThan(6000);
    expect(JSON.stringify(info)).toContain('handshake_timeout');
    expect(listener.connectionStats().h3).toMatchObject({ pending: 0, closed: { connect_timeout: 1 } });
  }, 20_000);
});
