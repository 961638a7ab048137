/**
 * Without the HTTP/3 module (a machine where the native package cannot be installed): the listener serves
 * HTTP/2 and says why, `h3` is refused with QG_ERR_TRANSPORT_UNAVAILABLE, `auto` uses HTTP/2. The module's
 * absence is simulated (detectHttp3 mocked): on the test machines it is installed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { ensureCertificates, type CertificateMaterial } from '../../src/transport/certs.js';
import type { AcceptedConnection } from '../../src/transport/types.js';
import { connectTunnel, type ConnectTunnelOptions } from '../../src/transport/wt-client.js';
import { createTunnelListener, type WebTransportListener } from '../../src/transport/wt-server.js';

vi.mock('../../src/transport/http3.js', () => ({
  HTTP3_PACKAGE: '@fails-components/webtransport-transport-http3-quiche',
  detectHttp3: async () => ({ available: false, reason: '@fails-components/webtransport-transport-http3-quiche is not installed' }),
}));

const logger = silentLogger();
let dir: string;
let certs: CertificateMaterial;
let listener: WebTransportListener;
const accepted: AcceptedConnection[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'qg-noh3-'));
  certs = await ensureCertificates(dir, { names: [] });
  listener = await createTunnelListener({ host: '127.0.0.1', port: 0, cert: certs.certPem, key: certs.keyPem, admission: async (r) => ({ ok: true, user: r.user }), sendQueuePackets: 64, logger, http3: 'auto' });
  listener.onConnection((a) => accepted.push(a));
});

afterAll(async () => {
  for (const a of accepted) a.connection.close({ reason: 'server_shutdown' });
  await listener?.close();
  await rm(dir, { recursive: true, force: true });
});

function options(transport: ConnectTunnelOptions['transport']): ConnectTunnelOptions {
  return { url: `https://127.0.0.1:${listener.port}`, user: 'alice', password: 'pw', previousAddresses: [], transport, caPem: certs.caPem, sendQueuePackets: 64, logger, connectTimeoutMs: 5000 };
}

describe('without the HTTP/3 module', () => {
  it('serves HTTP/2 and says why HTTP/3 is missing', () => {
    expect(listener.kinds).toEqual(['h2']);
    expect(listener.http3Unavailable).toMatch(/not installed/);
  });

  it('refuses transport h3 with QG_ERR_TRANSPORT_UNAVAILABLE', async () => {
    await expect(connectTunnel(options('h3'))).rejects.toMatchObject({ code: 'QG_ERR_TRANSPORT_UNAVAILABLE' });
  });

  it('uses HTTP/2 on auto', async () => {
    const client = await connectTunnel(options('auto'));
    expect(client.kind).toBe('h2');
    client.close({ reason: 'client_closed' });
  });
});
