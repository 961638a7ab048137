/**
 * The gateway's 13-day server certificate renewed while clients stay connected, on both transports: a test-only
 * knob (QUICGATE_TEST_CERT_RENEW_EVERY_S, src/gateway/server-tls.ts) renews it every few seconds. HTTP/2
 * clients keep flowing (their TLS sessions are not touched); HTTP/3 clients are reconnected at once (the native
 * listener cannot swap its certificate and restarts, wt-server.ts); a client connecting afterwards verifies the
 * renewed certificate: against the CA on HTTP/2, and on HTTP/3 by pinning the hash of the leaf it fetched and
 * verified over TLS, which only matches if the QUIC listener serves the renewed certificate too. The library's
 * CA path on HTTP/3 ("experimental ... DO NOT USE IN PRODUCTION") is never taken. Runs as root; never skips.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Topology } from './helpers/netns.js';
import { startClient, startTestbed, stopTestbed, TRANSPORTS, withTransports, type GatewayFiles, type QuicgateProcess, type TestUser } from './helpers/quicgate.js';

const GW4 = '198.18.0.1';
const USERS: TestUser[] = [
  { name: 'erin', password: 'erin-pw', bandwidth: 'unlimited' },
  { name: 'finn', password: 'finn-pw', bandwidth: 'unlimited' },
];
const SERVER_YAML = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/16 }
keepalive_interval: 1s
log_level: info
history: { enabled: false }
`;
const RENEW_EVERY_S = 5;

describe.each(TRANSPORTS)('certificate renewal over %s', (transport) => {
  let topo: Topology;
  let files: GatewayFiles;
  let gateway: QuicgateProcess;

  beforeAll(async () => {
    ({ topo, files, gateway } = await startTestbed(2, USERS, withTransports(SERVER_YAML, transport), { QUICGATE_TEST_CERT_RENEW_EVERY_S: String(RENEW_EVERY_S) }));
  }, 90_000);

  afterAll(() => stopTestbed({ topo, files }));

  it('keeps HTTP/2 and QUIC sessions flowing and brings HTTP/3 sessions straight back across renewals; a client connecting later verifies the renewed certificate', async () => {
    const first = startClient(topo, topo.clients[0]!, files.clientConfig('erin', 'erin', 'erin-pw', { transport }), 'erin');
    let second: QuicgateProcess | undefined;
    try {
      const up = await first.waitForMsg('tunnel up', 20_000);
      expect(up.transport).toBe(transport);
      const mark = gateway.lines.length;
      const clientMark = first.lines.length;
      // Two renewals while pinging through the tunnel all along.
      const ping = topo.exec(topo.clients[0]!, 'ping', ['-c', String(RENEW_EVERY_S * 6), '-i', '0.4', '-W', '2', GW4], 60_000);
      const isRenewal = (l: { msg: string }): boolean => l.msg === 'server certificate renewed';
      const once = await gateway.waitFor(isRenewal, 20_000, mark);
      const renewed = await gateway.waitFor(isRenewal, 20_000, gateway.lines.indexOf(once) + 1);
      const pinged = (await ping).stdout;
      if (transport !== 'h3') {
        // HTTP/2 and quicgate's QUIC: new handshakes get the new certificate, the live session is not touched.
        expect(pinged).toMatch(/ 0% packet loss/);
        expect(first.lines.slice(clientMark).filter((l) => l.msg === 'session closed' || l.msg === 'connect failed')).toEqual([]);
      } else {
        // HTTP/3: the native listener cannot swap its certificate; it restarts with the new one and its
        // sessions come back at once, on HTTP/3, with the same address, on their first attempt each time.
        await gateway.waitFor((l) => l.msg === 'HTTP/3 listener restarted with the renewed certificate', 5000, mark);
        const again = first.lines.slice(clientMark).filter((l) => l.msg === 'tunnel up');
        expect(again.length).toBeGreaterThanOrEqual(2);
        for (const l of again) expect([l.transport, l.ipv4]).toEqual(['h3', up.ipv4]);
        expect(first.lines.slice(clientMark).filter((l) => l.msg === 'connect failed')).toEqual([]);
        const received = Number(/(\d+) received/.exec(pinged)?.[1] ?? 0);
        console.info(`[cert-renewal] h3: ${received}/${RENEW_EVERY_S * 6} pings answered across ${again.length} listener restarts`);
        expect(received).toBeGreaterThanOrEqual(RENEW_EVERY_S * 6 - 4 * again.length);
      }
      // The file on disk is the renewed certificate, signed by the CA the clients trust.
      const cert = new X509Certificate(readFileSync(join(files.dataDir, 'server.pem')));
      expect(cert.verify(new X509Certificate(readFileSync(files.caFile)).publicKey)).toBe(true);

      second = startClient(topo, topo.clients[1]!, files.clientConfig('finn', 'finn', 'finn-pw', { transport }), 'finn');
      const upLater = await second.waitForMsg('tunnel up', 20_000);
      expect(upLater.transport).toBe(transport);
      // It connected on its first attempt: it accepted the certificate the gateway serves now (renewed).
      expect(second.lines.filter((l) => l.msg === 'connect failed')).toEqual([]);
      const pins = gateway.lines.filter((l) => l.msg === 'server certificate renewed').map((l) => String(l.pin));
      expect(pins.length).toBeGreaterThanOrEqual(2);
      expect(new Set(pins).size).toBe(pins.length);
      expect(String(renewed.pin)).toMatch(/^[0-9a-f]{64}$/);
      expect(pins).toContain(createHash('sha256').update(cert.raw).digest('hex'));
      expect((await topo.exec(topo.clients[1]!, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GW4])).stdout).toMatch(/3 received/);
      for (const p of [first, second]) expect(p.stderrText.join('\n')).not.toMatch(/DO NOT USE IN PRODUCTION|experimental/i);
    } finally {
      first.signal('SIGTERM');
      second?.signal('SIGTERM');
      await Promise.all([first.exited, second?.exited]);
    }
  });
});
