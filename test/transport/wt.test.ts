/**
 * Real WebTransport sessions over HTTP/2 and HTTP/3 on 127.0.0.1 (random ports): admission, control, datagrams, queue
 * bound, close reasons, peer death, TLS verification, and the patched library's stream integrity.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isQuicgateError, type QuicgateError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { ensureCertificates, type CertificateMaterial } from '../../src/transport/certs.js';
import type { ControlMessage } from '../../src/transport/control.js';
import { detectHttp3 } from '../../src/transport/http3.js';
import type { AcceptedConnection, Admission, AdmissionResult, TunnelConnection } from '../../src/transport/types.js';
import { MAX_WIRE_SUPER_PACKET_BYTES } from '../../src/transport/framing.js';
import { credentialHeaders, rejectedError, TUNNEL_PATH } from '../../src/transport/wt-auth.js';
import { connectTunnel, type ConnectTunnelOptions } from '../../src/transport/wt-client.js';
import { WebTransportConnection } from '../../src/transport/wt-connection.js';
import { loadWebTransportLibrary } from '../../src/transport/wt-lib.js';
import { createTunnelListener, type WebTransportListener } from '../../src/transport/wt-server.js';

const logger = silentLogger();
let dir: string;
let certs: CertificateMaterial;
let listener: WebTransportListener;
const accepted: AcceptedConnection[] = [];
const refusals: Record<string, AdmissionResult> = {
  wrong: { ok: false, status: 401, code: 'QG_ERR_AUTH_FAILED', message: 'unknown user or wrong password' },
  disabled: { ok: false, status: 403, code: 'QG_ERR_USER_DISABLED', message: 'user is disabled' },
  busy: { ok: false, status: 429, code: 'QG_ERR_THROTTLED', message: 'slow down' },
  full: { ok: false, status: 429, code: 'user_limit', message: 'this user has reached their session limit' },
};
const admission: Admission = async (request) => refusals[request.password] ?? { ok: true, user: request.user };

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'qg-wt-'));
  certs = await ensureCertificates(dir, { names: [] });
  listener = await createTunnelListener({ host: '127.0.0.1', port: 0, cert: certs.certPem, key: certs.keyPem, admission, sendQueuePackets: 4096, logger, http3: 'auto' });
  listener.onConnection((a) => accepted.push(a));
});

afterAll(async () => {
  for (const a of accepted) a.connection.close({ reason: 'server_shutdown' });
  await listener?.close();
  await rm(dir, { recursive: true, force: true });
});

function options(overrides: Partial<ConnectTunnelOptions> = {}): ConnectTunnelOptions {
  return {
    url: `https://127.0.0.1:${listener.port}`,
    user: 'alice',
    password: 'secret',
    previousAddresses: ['198.18.0.9'],
    transport: 'h2',
    caPem: certs.caPem,
    sendQueuePackets: 4096,
    logger,
    connectTimeoutMs: 5000,
    ...overrides,
  };
}

/** Connect and return both ends. */
async function pair(overrides: Partial<ConnectTunnelOptions> = {}): Promise<{ client: TunnelConnection; server: TunnelConnection }> {
  const before = accepted.length;
  const client = await connectTunnel(options(overrides));
  await vi.waitFor(() => expect(accepted.length).toBeGreaterThan(before));
  return { client, server: accepted[accepted.length - 1]!.connection };
}

async function refusal(overrides: Partial<ConnectTunnelOptions>): Promise<QuicgateError> {
  try {
    const c = await connectTunnel(options(overrides));
    c.close({ reason: 'client_closed' });
  } catch (err) {
    if (isQuicgateError(err)) return err;
    throw err;
  }
  throw new Error('connected although it should not');
}

/**
 * An HTTP/3 refusal as the client sees it: connectTunnel throws it when the close beat the control stream,
 * else the connection's `closed` carries it before any assignment (TunnelClient maps it the same way).
 */
async function h3Refusal(overrides: Partial<ConnectTunnelOptions>): Promise<QuicgateError> {
  let connection: TunnelConnection;
  try {
    connection = await connectTunnel(options({ ...overrides, transport: 'h3' }));
  } catch (err) {
    if (isQuicgateError(err)) return err;
    throw err;
  }
  const info = await connection.closed;
  expect(info.refused, `closed without a refusal: ${JSON.stringify(info)}`).toBeDefined();
  return rejectedError(info.refused!, connection.kind);
}

function collect(connection: TunnelConnection): Buffer[] {
  const packets: Buffer[] = [];
  connection.setReceiver({ onPacket: (d, o, l) => packets.push(Buffer.from(d.subarray(o, o + l))), onBatchEnd() {} });
  return packets;
}

describe('WebTransport tunnel over HTTP/2', () => {
  it('serves HTTP/2 and HTTP/3 on the same port number (the QUIC module is installed by scripts/test.sh)', async () => {
    const support = await detectHttp3();
    expect(support, 'the HTTP/3 module must load: bash ../shared/tools/install-http3.sh').toEqual({ available: true });
    expect(listener.kinds).toEqual(['h2', 'h3']);
    expect(listener.http3Unavailable).toBeUndefined();
  });

  it('admits with credentials from the request and tells the server who connected', async () => {
    const { client, server } = await pair();
    const request = accepted[accepted.length - 1]!.request;
    expect(request).toMatchObject({ user: 'alice', password: 'secret', sourceAddress: '127.0.0.1', previousAddresses: ['198.18.0.9'], transport: 'h2' });
    expect(client.kind).toBe('h2');
    expect(server.kind).toBe('h2');
    client.close({ reason: 'client_closed' });
  });

  it.each([
    ['wrong', 401, 'QG_ERR_AUTH_FAILED', false],
    ['disabled', 403, 'QG_ERR_USER_DISABLED', false],
    ['busy', 429, 'QG_ERR_THROTTLED', true],
  ] as const)('refusal %s surfaces as QG_ERR_REJECTED %i', async (password, status, reason, retry) => {
    const before = accepted.length;
    const err = await refusal({ password });
    expect(err.code).toBe('QG_ERR_REJECTED');
    expect(err.details).toMatchObject({ status, reason, retry });
    expect(accepted.length).toBe(before);
  });

  it('is on HTTP/3 with auto when UDP passes', async () => {
    const { client, server } = await pair({ transport: 'auto' });
    expect(client.kind).toBe('h3');
    expect(server.kind).toBe('h3');
    client.close({ reason: 'client_closed' });
  });

  it('carries control messages both ways', async () => {
    const { client, server } = await pair();
    const atClient: ControlMessage[] = [];
    const atServer: ControlMessage[] = [];
    client.setControlHandler((m) => atClient.push(m));
    server.setControlHandler((m) => atServer.push(m));
    const assign: ControlMessage = { type: 'assign', sessionId: 's1', ipv4: { address: '198.18.0.2', prefix: 15, gateway: '198.18.0.1' }, ipv6: null, mtu: 1280, dns: [], routes: ['0.0.0.0/0'], keepaliveMs: 10000 };
    server.sendControl(assign);
    client.sendControl({ type: 'keepalive', t: 42 });
    await vi.waitFor(() => expect(atClient).toEqual([assign]));
    await vi.waitFor(() => expect(atServer).toEqual([{ type: 'keepalive', t: 42 }]));
    client.close({ reason: 'client_closed' });
  });

  it('carries many packets both ways byte-exact, coalesced', async () => {
    const { client, server } = await pair();
    const atServer = collect(server);
    const atClient = collect(client);
    const up = Array.from({ length: 3000 }, (_, i) => randomBytes(40 + (i % 1400)));
    const down = Array.from({ length: 3000 }, (_, i) => randomBytes(1400 - (i % 1000)));
    for (let i = 0; i < up.length; i++) {
      expect(client.sendPacket(up[i]!, 0, up[i]!.length)).toBe(true);
      expect(server.sendPacket(down[i]!, 0, down[i]!.length)).toBe(true);
      if (i % 64 === 63) {
        client.flush();
        server.flush();
      }
    }
    client.flush();
    server.flush();
    await vi.waitFor(() => expect(atServer.length).toBe(up.length), { timeout: 10_000 });
    await vi.waitFor(() => expect(atClient.length).toBe(down.length), { timeout: 10_000 });
    expect(Buffer.concat(atServer).equals(Buffer.concat(up))).toBe(true);
    expect(Buffer.concat(atClient).equals(Buffer.concat(down))).toBe(true);
    expect(client.stats.datagramsSent).toBeLessThan(up.length / 4);
    expect(server.stats.datagramsReceived).toBe(client.stats.datagramsSent);
    expect(client.stats.queueDrops + server.stats.queueDrops).toBe(0);
    client.close({ reason: 'client_closed' });
  });

  it('negotiates framing 2 and carries 64 KB super-packets as single capsules (4-byte length) both ways, mixed with packets', async () => {
    const { client, server } = await pair();
    await vi.waitFor(() => expect([client.carriesSuperPackets, server.carriesSuperPackets]).toEqual([true, true]));
    // Both ends read the capsules themselves (the library's internals were as expected: wt-lib.ts divertHttp2Capsules).
    expect([client, server].map((c) => c instanceof WebTransportConnection && c.readsCapsules)).toEqual([true, true]);
    const got: { side: string; kind: number; gsoSize: number; bytes: Buffer }[] = [];
    const receiver = (side: string) => ({
      onPacket: (d: Buffer, o: number, l: number) => void got.push({ side, kind: 0, gsoSize: 0, bytes: Buffer.from(d.subarray(o, o + l)) }),
      onSuperPacket: (d: Buffer, o: number, l: number, kind: number, gsoSize: number) =>
        void got.push({ side, kind, gsoSize, bytes: Buffer.from(d.subarray(o, o + l)) }),
      onBatchEnd() {},
    });
    client.setReceiver(receiver('client'));
    server.setReceiver(receiver('server'));
    // Up to the library parser's capsule cap; one byte more is refused (the callers segment those).
    const tooLong = randomBytes(MAX_WIRE_SUPER_PACKET_BYTES + 1);
    expect(client.sendSuperPacket(tooLong, 0, tooLong.length, 1, 1000)).toBe(false);
    const sizes = [MAX_WIRE_SUPER_PACKET_BYTES, 16_384, 40_000, 65_000];
    const sent: { side: string; kind: number; gsoSize: number; bytes: Buffer }[] = [];
    for (const [i, size] of sizes.entries()) {
      const big = randomBytes(size);
      const small = randomBytes(1200);
      expect(server.sendSuperPacket(big, 0, big.length, 1 + (i % 4), 1000 + i)).toBe(true);
      expect(server.sendPacket(small, 0, small.length)).toBe(true);
      expect(client.sendSuperPacket(big, 0, big.length, 2, 1360)).toBe(true);
      sent.push({ side: 'client', kind: 1 + (i % 4), gsoSize: 1000 + i, bytes: big }, { side: 'client', kind: 0, gsoSize: 0, bytes: small });
      sent.push({ side: 'server', kind: 2, gsoSize: 1360, bytes: big });
    }
    server.flush();
    client.flush();
    await vi.waitFor(() => expect(got.length).toBe(sent.length), { timeout: 10_000 });
    const bySide = (list: typeof got, side: string) => list.filter((g) => g.side === side);
    expect(bySide(got, 'client')).toEqual(bySide(sent, 'client'));
    expect(bySide(got, 'server')).toEqual(bySide(sent, 'server'));
    expect(client.stats.malformed + server.stats.malformed).toBe(0);
    client.close({ reason: 'client_closed' });
  });

  it('bounds the send queue: drops and counts what does not fit, delivers the rest', async () => {
    const { client, server } = await pair({ sendQueuePackets: 50 });
    const atServer = collect(server);
    const packet = Buffer.alloc(1400, 3);
    let sent = 0;
    for (let i = 0; i < 5000; i++) if (client.sendPacket(packet, 0, packet.length)) sent++;
    client.flush();
    expect(client.stats.queueDrops).toBe(5000 - sent);
    expect(client.stats.queueDrops).toBeGreaterThan(4000);
    await vi.waitFor(() => expect(atServer.length).toBe(sent));
    client.close({ reason: 'client_closed' });
  });

  it('counts and ignores a malformed control line from a raw client', async () => {
    const lib = await loadWebTransportLibrary();
    const before = accepted.length;
    const wt = new lib.WebTransport(`https://127.0.0.1:${listener.port}${TUNNEL_PATH}`, {
      forceReliable: true,
      ca: certs.caPem,
      headers: credentialHeaders({ user: 'raw', password: 'secret', previousAddresses: [], clientVersion: 'test', resume: null }),
    });
    wt.closed.catch(() => {});
    await wt.ready;
    const stream = await wt.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    await vi.waitFor(() => expect(accepted.length).toBeGreaterThan(before));
    const server = accepted[accepted.length - 1]!.connection;
    const seen: ControlMessage[] = [];
    server.setControlHandler((m) => seen.push(m));
    await writer.write(new TextEncoder().encode('{"type":"keepalive","t":"x"}\nnot json\n{"type":"keepalive","t":7}\n'));
    await vi.waitFor(() => expect(seen).toEqual([{ type: 'keepalive', t: 7 }]));
    expect(server.stats.malformed).toBe(2);
    wt.close({ closeCode: 0, reason: '' });
    expect((await server.closed).reason).toBe('connection_lost');
  });

  it('server close with a reason reaches the client', async () => {
    const { client, server } = await pair();
    server.close({ reason: 'admin_kill', message: 'kicked' });
    expect(await client.closed).toEqual({ reason: 'admin_kill', message: 'kicked', retry: false });
    expect(await server.closed).toMatchObject({ reason: 'admin_kill' });
  });

  it('client close with a reason reaches the server', async () => {
    const { client, server } = await pair();
    client.close({ reason: 'client_closed', message: 'bye' });
    expect(await server.closed).toEqual({ reason: 'client_closed', message: 'bye', retry: true });
  });

  it('notices a client process that dies without closing', async () => {
    const before = accepted.length;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'fixtures/child-client.ts'), `https://127.0.0.1:${listener.port}`, Buffer.from(certs.caPem).toString('base64')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        child.stdout.once('data', (d: Buffer) => resolve(d.toString()));
        child.once('exit', (code) => reject(new Error(`child exited ${code}`)));
      });
      expect(line).toContain('connected h2');
      await vi.waitFor(() => expect(accepted.length).toBeGreaterThan(before));
      const server = accepted[accepted.length - 1]!.connection;
      child.kill('SIGKILL');
      const info = await server.closed;
      expect(info.reason).toBe('connection_lost');
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);
});

describe('WebTransport tunnel over HTTP/3', () => {
  it('admits with credentials from the query and carries packets both ways', async () => {
    const { client, server } = await pair({ transport: 'h3' });
    expect(accepted[accepted.length - 1]!.request).toMatchObject({ user: 'alice', password: 'secret', previousAddresses: ['198.18.0.9'], transport: 'h3' });
    const atServer = collect(server);
    const packet = randomBytes(1000);
    client.sendPacket(packet, 0, packet.length);
    client.flush();
    await vi.waitFor(() => expect(atServer).toEqual([packet]));
    client.close({ reason: 'client_closed' });
  });

  // The native HTTP/3 client sees no status or headers of a refused CONNECT: the refusal rides in the close.
  it.each([
    ['wrong', 401, 'QG_ERR_AUTH_FAILED', false],
    ['disabled', 403, 'QG_ERR_USER_DISABLED', false],
    ['busy', 429, 'QG_ERR_THROTTLED', true],
    ['full', 429, 'user_limit', true],
  ] as const)('refusal %s reaches the client as QG_ERR_REJECTED %i with its code, message and retry flag', async (password, status, reason, retry) => {
    const before = accepted.length;
    const err = await h3Refusal({ password });
    expect(err.code).toBe('QG_ERR_REJECTED');
    expect(err.details).toMatchObject({ status, reason, retry, message: refusals[password]!.ok ? '' : (refusals[password] as { message: string }).message, transport: 'h3' });
    expect(accepted.length).toBe(before);
  });
});

describe('TLS verification', () => {
  it('refuses a server whose certificate is not signed by the given CA', async () => {
    const otherDir = await mkdtemp(path.join(tmpdir(), 'qg-wt-other-'));
    try {
      const other = await ensureCertificates(otherDir, { names: [] });
      const err = await refusal({ caPem: other.caPem });
      expect(err.code).toBe('QG_ERR_TLS');
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  it('refuses without a CA or pin (no silent insecure mode)', async () => {
    const err = await refusal({ caPem: undefined });
    expect(err.code).toBe('QG_ERR_TLS');
  });

  it('accepts the pinned certificate hash and refuses a wrong pin', async () => {
    const { client } = await pair({ caPem: undefined, pinnedCertHashes: [certs.certHash] });
    expect(client.kind).toBe('h2');
    client.close({ reason: 'client_closed' });
    const err = await refusal({ caPem: undefined, pinnedCertHashes: ['00'.repeat(32)] });
    expect(err.code).toBe('QG_ERR_TLS');
  });
});

describe('patched library: HTTP/2 stream integrity (defect 2)', () => {
  it('echoes 3 MB on stream 0 byte-exact both ways', async () => {
    const lib = await loadWebTransportLibrary();
    const server = new lib.Http2Server({ port: 0, host: '127.0.0.1', secret: 'test-secret', cert: certs.certPem, privKey: certs.keyPem });
    server.setRequestCallback(async () => ({ status: 200, path: '/echo' }));
    const sessions = server.sessionStream('/echo').getReader();
    server.startServer();
    await server.ready;
    const port = server.address()!.port;
    void (async () => {
      const { value: session } = await sessions.read();
      if (!session) return;
      session.closed.catch(() => {});
      const { value: stream } = await session.incomingBidirectionalStreams.getReader().read();
      if (stream) await stream.readable.pipeTo(stream.writable).catch(() => {});
    })();
    const wt = new lib.WebTransport(`https://127.0.0.1:${port}/echo`, { forceReliable: true, ca: certs.caPem });
    wt.closed.catch(() => {});
    try {
      await wt.ready;
      const stream = await wt.createBidirectionalStream();
      const data = randomBytes(3 * 1024 * 1024);
      const writer = stream.writable.getWriter();
      const writing = (async () => {
        for (let off = 0; off < data.length; off += 50_000) await writer.write(data.subarray(off, off + 50_000));
        await writer.close();
      })();
      const chunks: Buffer[] = [];
      const reader = stream.readable.getReader();
      let received = 0;
      while (received < data.length) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(Buffer.from(value));
        received += value.byteLength;
      }
      await writing;
      expect(received).toBe(data.length);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
    } finally {
      wt.close({ closeCode: 0, reason: '' });
      server.stopServer();
    }
  }, 30_000);
});

describe('transports.h2: false', () => {
  it('refuses to start without any transport left', async () => {
    await expect(
      createTunnelListener({ host: '127.0.0.1', port: 0, cert: certs.certPem, key: certs.keyPem, admission, sendQueuePackets: 64, logger, http3: 'off', http2: false }),
    ).rejects.toMatchObject({ code: 'QG_ERR_LISTEN', message: expect.stringContaining('no transport left') });
  });

  it('refuses every HTTP/2 session (404, final for the client) while HTTP/3 serves', async () => {
    const http3 = await detectHttp3();
    const start = createTunnelListener({ host: '127.0.0.1', port: 0, cert: certs.certPem, key: certs.keyPem, admission, sendQueuePackets: 64, logger, http3: 'auto', http2: false });
    if (!http3.available) {
      // Without the QUIC module nothing is left to serve: the same refusal as above.
      await expect(start).rejects.toMatchObject({ code: 'QG_ERR_LISTEN' });
      return;
    }
    const h3only = await start;
    try {
      expect(h3only.kinds).toEqual(['h3']);
      const err = await connectTunnel(options({ url: `https://127.0.0.1:${h3only.port}` })).then(
        (c) => {
          c.close({ reason: 'client_closed' });
          return null;
        },
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'QG_ERR_REJECTED', details: { status: 404, reason: 'QG_ERR_TRANSPORT_UNAVAILABLE', retry: false } });
    } finally {
      await h3only.close();
    }
  });
});
