/**
 * Library HTTP/3 QUIC connections without a session request are bounded by their datagrams
 * (h3-connection-guard.ts): on crafted datagrams and a FakeClock, and against the real native module on
 * 127.0.0.1 (the connection IDs QUICHE really uses are the ones the guard derives; a connection that never sends
 * its session request is cut at the deadline, one over the per-source bound never gets its handshake, and a
 * real client's session still comes up). The real part fails when the library's internals change.
 */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import type { RemoteInfo } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { ensureCertificates, type CertificateMaterial } from '../../src/transport/certs.js';
import { H3ConnectionGuard, type H3ConnectionGuardOptions } from '../../src/transport/h3-connection-guard.js';
import { serverConnectionIds } from '../../src/transport/h3-packet.js';
import type { AcceptedConnection } from '../../src/transport/types.js';
import { connectTunnel } from '../../src/transport/wt-client.js';
import { findHttp3Socket, gateHttp3Datagrams, loadWebTransportLibrary, type WtClient } from '../../src/transport/wt-lib.js';
import { createTunnelListener, type WebTransportListener } from '../../src/transport/wt-server.js';

const logger = silentLogger();

function longHeader(type: number, dcid: Buffer, size: number): Buffer {
  const head = Buffer.concat([Buffer.from([0xc0 | (type << 4) | 0x01, 0, 0, 0, 1, dcid.length]), dcid, Buffer.from([8]), randomBytes(8)]);
  return Buffer.concat([head, Buffer.alloc(Math.max(0, size - head.length))]);
}
const initial = (dcid: Buffer, size = 1200): Buffer => longHeader(0, dcid, size);
const handshake = (dcid: Buffer): Buffer => longHeader(2, dcid, 80);
const short = (dcid: Buffer): Buffer => Buffer.concat([Buffer.from([0x41]), dcid, randomBytes(40)]);
const cid = (n: number, length = 8): Buffer => Buffer.alloc(length, n);

describe('H3ConnectionGuard (fake clock, crafted datagrams)', () => {
  const make = (extra: Partial<H3ConnectionGuardOptions> = {}) => {
    const clock = new FakeClock();
    const guard = new H3ConnectionGuard({ handshakeTimeoutMs: 1000, maxPending: 4, maxPendingPerSource: 2, idleLingerMs: 60_000, handshakeLingerMs: 5_000, logger, clock, ...extra });
    return { clock, guard };
  };

  it('opens connections up to the per-source (IPv6 /64) and total bounds, drops the Initials of the rest, counts each attempt once', () => {
    const { guard } = make();
    expect(guard.onDatagram(initial(cid(1)), '2001:db8:1::1', 1000)).toBe(true);
    expect(guard.onDatagram(initial(cid(1)), '2001:db8:1::1', 1000)).toBe(true); // its retransmission
    expect(guard.onDatagram(initial(cid(2)), '2001:db8:1::2', 1000)).toBe(true);
    expect(guard.onDatagram(initial(cid(3)), '2001:db8:1::3', 1000)).toBe(false); // the same /64
    expect(guard.onDatagram(initial(cid(3)), '2001:db8:1::3', 1000)).toBe(false); // retransmitted: not counted again
    expect(guard.onDatagram(initial(cid(4)), '192.0.2.7', 1)).toBe(true);
    // A second connection from one address and port (another destination ID) is a connection of its own.
    expect(guard.onDatagram(initial(cid(5, 12)), '192.0.2.7', 1)).toBe(true);
    expect(guard.onDatagram(initial(cid(6)), '192.0.2.8', 1)).toBe(false);
    expect(guard.stats()).toMatchObject({ pending: 4, open: 4, cut: 0, closed: { limit_source: 1, limit_total: 1 } });
  });

  it('drops the Initials of a blocked source; leaves small Initials, other versions and unknown short headers to QUICHE', () => {
    const { guard } = make({ sourceBlocked: (a) => a === '192.0.2.66' });
    expect(guard.onDatagram(initial(cid(1)), '192.0.2.66', 5)).toBe(false);
    expect(guard.onDatagram(initial(cid(2), 1199), '192.0.2.1', 5)).toBe(true);
    const v2 = initial(cid(3));
    v2.writeUInt32BE(0x6b3343cf, 1);
    expect(guard.onDatagram(v2, '192.0.2.1', 5)).toBe(true);
    expect(guard.onDatagram(short(cid(4)), '192.0.2.1', 5)).toBe(true);
    expect(guard.onDatagram(Buffer.alloc(0), '192.0.2.1', 5)).toBe(true);
    expect(guard.stats()).toMatchObject({ pending: 0, open: 0, closed: { source_blocked: 1 } });
  });

  it('cuts a connection without a handshake at the deadline and holds it until QUICHE’s handshake limit', () => {
    const { clock, guard } = make();
    const id = cid(7, 16);
    const server = serverConnectionIds(id, 2)[0]!;
    guard.onDatagram(initial(id), '192.0.2.1', 9);
    clock.advance(1000);
    expect(guard.stats()).toMatchObject({ pending: 0, open: 1, cut: 1, closed: { handshake_timeout: 1, connect_timeout: 0 } });
    expect(guard.onDatagram(initial(id), '192.0.2.1', 9)).toBe(false);
    expect(guard.onDatagram(initial(server), '192.0.2.1', 9)).toBe(false);
    expect(guard.onDatagram(short(server), '192.0.2.1', 9)).toBe(false);
    // It still counts against the per-source bound: one more fits, not two.
    expect(guard.onDatagram(initial(cid(8)), '192.0.2.1', 10)).toBe(true);
    expect(guard.onDatagram(initial(cid(9)), '192.0.2.1', 11)).toBe(false);
    clock.advance(4000); // 5 s after its first Initial
    expect(guard.stats()).toMatchObject({ pending: 0, cut: 1 }); // cid(8) was cut in the meantime; cid(7) forgotten
    expect(guard.onDatagram(short(server), '192.0.2.1', 9)).toBe(true);
  });

  it('a connection that finished its handshake is cut as connect_timeout and held for QUICHE’s idle timeout, under all its server IDs', () => {
    const { clock, guard } = make();
    const id = cid(3);
    const ids = serverConnectionIds(id, 8);
    expect(ids[0]).toEqual(id); // an 8-byte original ID is kept by QUICHE
    guard.onDatagram(initial(id), '192.0.2.1', 9);
    guard.onDatagram(handshake(ids[0]!), '192.0.2.1', 9);
    const other = cid(4);
    guard.onDatagram(initial(other), '192.0.2.2', 9);
    guard.onDatagram(handshake(other), '192.0.2.2', 9);
    guard.sessionRequest('192.0.2.2:9'); // the other one sends its session request in time
    clock.advance(1000);
    expect(guard.stats()).toMatchObject({ pending: 0, cut: 1, closed: { connect_timeout: 1, handshake_timeout: 0 } });
    // A migrated peer using an ID the server issued later is cut too; the other connection's packets pass.
    expect(guard.onDatagram(short(ids[5]!), '198.51.100.9', 4000)).toBe(false);
    expect(guard.onDatagram(short(ids[0]!), '192.0.2.1', 9)).toBe(false);
    expect(guard.onDatagram(short(other), '192.0.2.2', 9)).toBe(true);
    clock.advance(59_000);
    expect(guard.stats().cut).toBe(1);
    clock.advance(1000);
    expect(guard.stats()).toMatchObject({ pending: 0, open: 0, cut: 0 });
    expect(guard.onDatagram(short(ids[0]!), '192.0.2.1', 9)).toBe(true);
  });

  it('a session request frees its connection (IPv4-mapped and bracketed IPv6 peers too)', () => {
    const { clock, guard } = make();
    guard.onDatagram(initial(cid(1)), '::ffff:192.0.2.5', 7);
    guard.onDatagram(initial(cid(2)), '2001:db8::5', 7);
    guard.sessionRequest('192.0.2.5:7');
    guard.sessionRequest('[2001:db8::5]:7');
    expect(guard.stats()).toMatchObject({ pending: 0, open: 0 });
    // A late Initial of it (padded, to the server's ID) is no new connection: no entry, nothing cut later.
    expect(guard.onDatagram(initial(cid(1)), '192.0.2.5', 7)).toBe(true);
    clock.advance(5000);
    expect(guard.stats()).toMatchObject({ pending: 0, open: 0, closed: { connect_timeout: 0, handshake_timeout: 0 } });
    expect(guard.onDatagram(short(cid(1)), '192.0.2.5', 7)).toBe(true);
  });

  it('sees a Handshake packet coalesced behind an Initial in one datagram', () => {
    const { clock, guard } = make();
    guard.onDatagram(initial(cid(1)), '192.0.2.1', 1);
    // Initial: header, token length 0, length 2 (packet number + 1 byte), then a Handshake packet.
    const first = Buffer.concat([Buffer.from([0xc0, 0, 0, 0, 1, 8]), cid(1), Buffer.from([0, 0, 2, 0, 0])]);
    const datagram = Buffer.concat([first, handshake(cid(1))]);
    guard.onDatagram(Buffer.concat([datagram, Buffer.alloc(1200 - datagram.length)]), '192.0.2.1', 1);
    clock.advance(1000);
    expect(guard.stats().closed).toMatchObject({ connect_timeout: 1, handshake_timeout: 0 });
  });

  it('derives QUICHE’s replacement IDs with FNV-1a 64 (little-endian), one from the other', () => {
    // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
    const [first, second] = serverConnectionIds(Buffer.from('a'), 2);
    expect(first!.toString('hex')).toBe('8cec01864cdc63af');
    expect(serverConnectionIds(first!, 2)).toEqual([first, second]); // an 8-byte ID is kept, the next derived from it
    expect(second).not.toEqual(first);
  });
});

describe('against the real HTTP/3 module (127.0.0.1)', () => {
  let dir: string;
  let certs: CertificateMaterial;
  let hash: Buffer;
  type CreateSession = (this: unknown, ...args: unknown[]) => Promise<unknown>;
  // The library client's step that sends the session request (lib/client.js HttpClient, 1.6.8).
  let proto: { createWTSession: CreateSession };
  let createWTSession: CreateSession;
  /** While set, library clients complete the QUIC handshake and never send their session request. */
  let holding = false;
  let handshakes = 0;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'qg-h3conn-'));
    certs = await ensureCertificates(dir, { names: [] });
    hash = createHash('sha256').update(new X509Certificate(certs.certPem).raw).digest();
    const clientModule: string = '../../node_modules/@fails-components/webtransport/lib/client.js';
    proto = ((await import(clientModule)) as { HttpClient: { prototype: { createWTSession: CreateSession } } }).HttpClient.prototype;
    createWTSession = proto.createWTSession;
    expect(typeof createWTSession).toBe('function');
    proto.createWTSession = function (...args) {
      if (!holding) return createWTSession.apply(this, args);
      handshakes++;
      return new Promise(() => {});
    };
  });

  afterAll(async () => {
    proto.createWTSession = createWTSession;
    await rm(dir, { recursive: true, force: true });
  });

  async function holder(port: number, quicConnectTimeout: number): Promise<WtClient> {
    const lib = await loadWebTransportLibrary();
    const client = new lib.WebTransport(`https://127.0.0.1:${port}/tunnel`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: hash }], quicConnectTimeout, requireUnreliable: true });
    client.ready.catch(() => {});
    client.closed.catch(() => {});
    return client;
  }

  async function until(check: () => boolean, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  }

  it('the datagram gate sits where the library delivers to QUICHE, and QUICHE uses the server IDs the guard derives', async () => {
    const lib = await loadWebTransportLibrary();
    await lib.quicheLoaded;
    const server = new lib.Http3Server({ port: 0, host: '127.0.0.1', secret: randomBytes(16).toString('hex'), cert: certs.certPem, privKey: certs.keyPem });
    server.setRequestCallback(async () => ({ status: 200, path: '/tunnel' }));
    const sessions = server.sessionStream('/tunnel').getReader();
    server.startServer();
    await server.ready;
    try {
      const socket = findHttp3Socket(server);
      expect(socket, 'transportInt.socket.socketInt is no node:dgram socket').not.toBeNull();
      const seen: { kind: string; dcid: string }[] = [];
      expect(
        gateHttp3Datagrams(socket!, (msg: Buffer, _rinfo: RemoteInfo) => {
          if ((msg[0]! & 0x80) === 0) seen.push({ kind: 'short', dcid: msg.subarray(1, 9).toString('hex') });
          else seen.push({ kind: ['initial', '0rtt', 'handshake', 'retry'][(msg[0]! & 0x30) >> 4]!, dcid: msg.subarray(6, 6 + msg[5]!).toString('hex') });
          return true;
        }),
      ).toBe(true);
      const client = new lib.WebTransport(`https://127.0.0.1:${server.address()!.port}/tunnel`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: hash }] });
      await client.ready;
      const session = (await sessions.read()).value!;
      await session.ready;
      const writer = client.datagrams.createWritable().getWriter();
      for (let i = 0; i < 20; i++) await writer.write(new Uint8Array(100));
      await new Promise((r) => setTimeout(r, 200));
      client.close();
      const original = Buffer.from(seen[0]!.dcid, 'hex');
      expect(seen[0]!.kind).toBe('initial');
      const known = new Set([original, ...serverConnectionIds(original, 8)].map((b) => b.toString('hex')));
      const foreign = seen.filter((s) => s.kind !== 'initial' && !known.has(s.dcid));
      expect(seen.some((s) => s.kind === 'handshake')).toBe(true);
      expect(seen.filter((s) => s.kind === 'short').length).toBeGreaterThan(5);
      expect(foreign, `destination IDs the guard would not know (original ${seen[0]!.dcid})`).toEqual([]);
    } finally {
      server.stopServer();
    }
  });

  describe('through the tunnel listener', () => {
    let listener: WebTransportListener;
    const accepted: AcceptedConnection[] = [];
    const clients: WtClient[] = [];

    beforeAll(async () => {
      listener = await createTunnelListener({
        host: '127.0.0.1',
        port: 0,
        cert: certs.certPem,
        key: certs.keyPem,
        admission: async (request) => ({ ok: true, user: request.user }),
        sendQueuePackets: 256,
        logger,
        http3: 'auto',
        limits: { handshakeTimeoutMs: 1500, maxPending: 16, maxPendingPerSource: 2 },
      });
      listener.onConnection((a) => accepted.push(a));
      expect(listener.kinds).toContain('h3');
    });

    afterAll(async () => {
      for (const c of clients) c.close();
      for (const a of accepted) a.connection.close({ reason: 'server_shutdown' });
      await listener?.close();
    });

    it('cuts a connection that never sends its session request, drops one over the per-source bound, and a real client still connects', async () => {
      holding = true;
      clients.push(await holder(listener.port, 8000));
      await until(() => handshakes === 1, 8000);
      expect(handshakes).toBe(1);
      expect(listener.connectionStats()).toMatchObject({ pending: 1, h3Cut: 0 });
      await new Promise((r) => setTimeout(r, 2500));
      const cutStats = listener.connectionStats();
      expect(cutStats).toMatchObject({ pending: 0, h3Cut: 1, closed: { connect_timeout: 1 } });

      // The cut connection holds one of the source's two places: a real client takes the other and gets its tunnel.
      holding = false;
      const real = await connectTunnel({
        url: `https://127.0.0.1:${listener.port}`,
        user: 'alice',
        password: 'pw',
        previousAddresses: [],
        transport: 'h3',
        caPem: certs.caPem,
        sendQueuePackets: 256,
        logger,
        connectTimeoutMs: 8000,
      });
      await until(() => accepted.length === 1, 5000);
      expect(accepted.length).toBe(1);
      real.close({ reason: 'client_exit' });

      // Two more holders at once: one fits beside the cut one, the other's Initials are dropped (no handshake).
      holding = true;
      clients.push(await holder(listener.port, 3000), await holder(listener.port, 3000));
      await new Promise((r) => setTimeout(r, 3500));
      expect(handshakes, JSON.stringify(listener.connectionStats())).toBe(2);
      const stats = listener.connectionStats();
      expect(stats.closed.limit_source - cutStats.closed.limit_source).toBe(1);
      // The first holder and the one that fitted are cut; the real client's connection (it sent its request) is not.
      // (connect_timeout also counts the HTTP/2 guard's: the real client fetched the certificate over TLS.)
      expect(stats).toMatchObject({ h3Cut: 2, closed: { handshake_timeout: 0 } });
      expect(stats.closed.connect_timeout).toBeGreaterThanOrEqual(2);
    }, 30_000);
  });
});
