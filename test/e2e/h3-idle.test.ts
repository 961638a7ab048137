/**
 * Library HTTP/3 QUIC connections that never send a WebTransport session request, against a real gateway in
 * network namespaces (issue 12, section 1; src/transport/h3-connection-guard.ts):
 *
 *   qge-…-s   gateway 192.0.2.1, transports { quic: off, h3: auto } (admin API on its loopback)
 *   qge-…-c1  the holding host: test/e2e/helpers/h3-holder.mjs (the library's own client, real QUIC handshakes,
 *             its session request held back; one UDP socket per connection)
 *   qge-…-c2  good: the real client over HTTP/3, ping through the tunnel meanwhile
 *
 * Only max_pending_per_source connections get their handshake; the others' Initials are dropped (counted once
 * per connection as limit_source); those held are cut at the handshake deadline (connect_timeout) and a session
 * request sent on them afterwards gets no answer; the good client keeps its tunnel; the gateway's fds and memory
 * stay bounded. Initials QUICHE cannot decrypt (a spoofer's) count as connections too: within the bound, cut at
 * the deadline as handshake_timeout and forgotten QUICHE's handshake limit later. Runs as root; fails (never
 * skips) when it cannot.
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, footprint, metricSamples, sleep } from './helpers/hostile-ops.js';
import type { Topology } from './helpers/netns.js';
import { GatewayFiles, QuicgateProcess, startClient, startTestbed, stopTestbed, withTransports, type TestUser } from './helpers/quicgate.js';

const HOLDER = resolve(import.meta.dirname, 'helpers/h3-holder.mjs');
const TOKEN = 'e2e-h3-idle-admin-token-0123456789';
const GW4 = '198.18.0.1';
const HANDSHAKE_TIMEOUT_S = 2;
const PER_SOURCE = 16;
const HOLDERS = 200;
const USERS: TestUser[] = [{ name: 'good', password: 'good-pw', bandwidth: 'unlimited' }];
const SERVER_YAML = withTransports(
  `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/16 }
  ipv6: { network: "2001:db8:1::/64" }
keepalive_interval: 2s
connections: { handshake_timeout: ${HANDSHAKE_TIMEOUT_S}s, max_pending: 256, max_pending_per_source: ${PER_SOURCE} }
admin: { listen: 127.0.0.1, port: 9090, token: ${TOKEN} }
history: { enabled: false }
log_level: info
`,
  'h3',
);

let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;
let good: QuicgateProcess;

type HolderEvent = Record<string, number> & { event: string };

async function metric(name: string): Promise<Map<string, number>> {
  const { body } = await adminRequest(topo, TOKEN, 'GET', '/metrics');
  return metricSamples(String(body), name);
}

beforeAll(async () => {
  ({ topo, files, gateway } = await startTestbed(2, USERS, SERVER_YAML));
  good = startClient(topo, topo.clients[1]!, files.clientConfig('good', 'good', 'good-pw', { transport: 'h3' }), 'good');
  await good.waitForMsg('tunnel up');
}, 90_000);

afterAll(() => stopTestbed({ topo, files }));

describe('HTTP/3 connections without a session request', () => {
  it('gives the handshake to max_pending_per_source of them, cuts those at the deadline, counts all, and the good client keeps its tunnel', async () => {
    const before = await metric('quicgate_connections_closed_total');
    const rejectionsBefore = await metric('quicgate_rejections_total');
    const linesBefore = gateway.lines.length;
    const base = footprint(gateway.pid);
    const args = JSON.stringify({ host: '192.0.2.1', port: 4433, caFile: files.caFile, count: HOLDERS, connectTimeoutMs: 4000, lateMs: 8000, holdMs: 16_000 });
    const running = topo.exec(topo.clients[0]!, process.execPath, [HOLDER, args], 120_000);
    // While they are held (and after they are cut): the good client's tunnel carries ping.
    await sleep(1000);
    const ping = await topo.exec(topo.clients[1]!, 'ping', ['-c', '20', '-i', '0.3', '-W', '3', GW4]);
    const during = footprint(gateway.pid);
    const cutGauge = (await metric('quicgate_h3_connections_cut')).get('') ?? -1;
    const { stdout } = await running;
    const events = Object.fromEntries(
      stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as HolderEvent)
        .map((e) => [e.event, e]),
    );
    const after = await metric('quicgate_connections_closed_total');
    const delta = (reason: string): number => (after.get(`reason="${reason}"`) ?? 0) - (before.get(`reason="${reason}"`) ?? 0);
    const end = footprint(gateway.pid);
    console.info(
      `[h3-idle] ${JSON.stringify(events.held)} ${JSON.stringify(events.late)}; closed: connect_timeout ${delta('connect_timeout')}, handshake_timeout ${delta('handshake_timeout')}, limit_source ${delta('limit_source')}; cut gauge ${cutGauge}; gateway fds ${base.fds}/${during.fds}/${end.fds}, RSS ${(base.rssKb / 1024).toFixed(1)}/${(during.rssKb / 1024).toFixed(1)}/${(end.rssKb / 1024).toFixed(1)} MiB (before/during/after)`,
    );
    expect(events.held!.handshakes).toBe(PER_SOURCE);
    expect(delta('limit_source')).toBe(HOLDERS - PER_SOURCE);
    expect(delta('connect_timeout')).toBe(PER_SOURCE);
    expect(delta('handshake_timeout')).toBe(0);
    expect(cutGauge).toBe(PER_SOURCE);
    // Cut: the session requests they send at last never reach the gateway, and get no answer.
    expect(events.late).toMatchObject({ tried: PER_SOURCE, answered: 0 });
    expect(await metric('quicgate_rejections_total')).toEqual(rejectionsBefore);
    expect(gateway.lines.slice(linesBefore).filter((l) => l.msg === 'session opened')).toEqual([]);
    expect((await metric('quicgate_connections')).get('state="pending"')).toBe(0);
    expect(Number(/(\d+) received/.exec(ping.stdout)?.[1] ?? 0)).toBeGreaterThanOrEqual(18);
    expect(good.lines.filter((l) => l.msg === 'session closed')).toEqual([]);
    // One UDP socket serves them all; what QUICHE holds for the cut ones is bounded by the per-source bound.
    expect(end.fds).toBeLessThanOrEqual(base.fds + 2);
    expect(end.rssKb - base.rssKb).toBeLessThan(40 * 1024);
    expect(gateway.lines.filter((l) => l.level >= 50)).toEqual([]);
  }, 120_000);

  it('counts Initials QUICHE cannot decrypt within the bound, cuts them as handshake_timeout, and forgets them after QUICHE’s handshake limit', async () => {
    const before = await metric('quicgate_connections_closed_total');
    const cutBefore = (await metric('quicgate_h3_connections_cut')).get('') ?? 0;
    const args = JSON.stringify({ host: '192.0.2.1', port: 4433, junkInitials: 40 });
    // From the good client's host: its own connection sent its session request long ago and holds no place.
    await topo.exec(topo.clients[1]!, process.execPath, [HOLDER, args], 60_000);
    await sleep((HANDSHAKE_TIMEOUT_S + 1) * 1000);
    const after = await metric('quicgate_connections_closed_total');
    const delta = (reason: string): number => (after.get(`reason="${reason}"`) ?? 0) - (before.get(`reason="${reason}"`) ?? 0);
    expect(delta('limit_source')).toBe(40 - PER_SOURCE);
    expect(delta('handshake_timeout')).toBe(PER_SOURCE);
    expect((await metric('quicgate_h3_connections_cut')).get('')).toBe(cutBefore + PER_SOURCE);
    // QUICHE's handshake limit (10 s) + 5 s after their Initials they are forgotten; the good client was not touched.
    await sleep(15_000 - (HANDSHAKE_TIMEOUT_S + 1) * 1000 + 2000);
    expect((await metric('quicgate_h3_connections_cut')).get('')).toBe(cutBefore);
    const ping = await topo.exec(topo.clients[1]!, 'ping', ['-c', '5', '-i', '0.3', '-W', '3', GW4]);
    expect(Number(/(\d+) received/.exec(ping.stdout)?.[1] ?? 0)).toBeGreaterThanOrEqual(4);
    expect(gateway.lines.filter((l) => l.level >= 50)).toEqual([]);
  }, 60_000);
});
