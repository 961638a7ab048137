/**
 * Floods from one host against a real gateway in network namespaces (issue 12, section 1):
 *
 *   qge-…-s   gateway 192.0.2.1 (admin API on its loopback)
 *   qge-…-c1  the flooding host: test/e2e/helpers/flood-client.mjs (real TLS / HTTP/2 clients, own process)
 *   qge-…-c2  good: the real client, iperf3 and ping through the tunnel meanwhile
 *
 * Idle TLS connections are closed by the handshake deadline or reset at accept by the per-source limit, and
 * counted; a flood of idle connections, wrong passwords and garbage leaves the good client its traffic (bound
 * generous here; the goals 0.8 / +10 ms / +16 MiB are measured by bench/flood.ts); repeated floods do not grow
 * the gateway's memory; a second gateway on the port in use says where and why. Runs as root; fails (never
 * skips) when it cannot.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, footprint, metricSamples, sleep } from './helpers/hostile-ops.js';
import type { Topology } from './helpers/netns.js';
import { BIN, GatewayFiles, QuicgateProcess, iperf, mbit, startClient, startTestbed, stopTestbed, type TestUser } from './helpers/quicgate.js';

const FLOOD = resolve(import.meta.dirname, 'helpers/flood-client.mjs');
const TOKEN = 'e2e-flood-admin-token-0123456789';
const GW4 = '198.18.0.1';
const HANDSHAKE_TIMEOUT_S = 3;
const PER_SOURCE = 64;
const USERS: TestUser[] = [{ name: 'good', password: 'good-pw', bandwidth: 'unlimited' }];
const SERVER_YAML = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/16 }
  ipv6: { network: "2001:db8:1::/64" }
keepalive_interval: 2s
auth_attempts: { per_source_per_minute: 10 }
connections: { handshake_timeout: ${HANDSHAKE_TIMEOUT_S}s, max_pending: 512, max_pending_per_source: ${PER_SOURCE} }
admin: { listen: 127.0.0.1, port: 9090, token: ${TOKEN} }
history: { enabled: false }
log_level: info
`;

let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;
let good: QuicgateProcess;

type FloodEvent = Record<string, unknown> & { event: string };

async function flood(options: Record<string, unknown>): Promise<Record<string, FloodEvent>> {
  const args = JSON.stringify({ host: '192.0.2.1', port: 4433, caFile: files.caFile, ...options });
  const { stdout } = await topo.exec(topo.clients[0]!, process.execPath, [FLOOD, args], 180_000);
  const events = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as FloodEvent);
  return Object.fromEntries(events.map((e) => [e.event, e]));
}

async function metric(name: string): Promise<Map<string, number>> {
  const { body } = await adminRequest(topo, TOKEN, 'GET', '/metrics');
  return metricSamples(String(body), name);
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

beforeAll(async () => {
  ({ topo, files, gateway } = await startTestbed(2, USERS, SERVER_YAML));
  good = startClient(topo, topo.clients[1]!, files.clientConfig('good', 'good', 'good-pw'), 'good');
  await good.waitForMsg('tunnel up');
}, 90_000);

afterAll(() => stopTestbed({ topo, files }));

describe('floods from one host', () => {
  it('closes idle TLS connections by the handshake deadline, resets those over the per-source limit, and counts both', async () => {
    const before = await metric('quicgate_connections_closed_total');
    const fdsBefore = footprint(gateway.pid).fds;
    const result = (await flood({ idle: 400, holdMs: 15_000 })).idle!;
    console.info(`[flood] idle: ${JSON.stringify(result)}`);
    // Nothing stays open: what got in was closed by the gateway within the deadline (plus scheduling slack).
    expect(result.stillOpen).toBe(0);
    expect(result.resetBeforeTls).toBeGreaterThanOrEqual(400 - 2 * PER_SOURCE);
    expect(result.closedByGateway).toBeGreaterThanOrEqual(1);
    expect(result.lastCloseMs as number).toBeLessThan((HANDSHAKE_TIMEOUT_S + 6) * 1000);
    const after = await metric('quicgate_connections_closed_total');
    const delta = (reason: string): number => (after.get(`reason="${reason}"`) ?? 0) - (before.get(`reason="${reason}"`) ?? 0);
    expect(delta('limit_source')).toBeGreaterThanOrEqual(result.resetBeforeTls as number);
    expect(delta('connect_timeout') + delta('handshake_timeout')).toBe(result.closedByGateway);
    expect((await metric('quicgate_connections')).get('state="pending"')).toBe(0);
    expect(footprint(gateway.pid).fds).toBeLessThanOrEqual(fdsBefore + 2);
    expect(gateway.lines.filter((l) => l.level >= 50)).toEqual([]);
  });

  it('refuses a flood of idle connections, wrong passwords and garbage cheaply, and the good client keeps its tunnel', async () => {
    // 1. The flood alone: what it costs the gateway (CPU time of its process, robust against a busy machine).
    const cpuBefore = cpuSeconds(gateway.pid);
    const rejectionsBefore = await metric('quicgate_rejections_total');
    // Passwords first on their own: together with the idle flood they would mostly meet the per-source bound.
    const result = { ...(await flood({ passwords: 2000 })), ...(await flood({ idle: 1500, garbage: 200, holdMs: 20_000 })) };
    const cpu = cpuSeconds(gateway.pid) - cpuBefore;
    const answers = result.passwords!.answers as Record<string, number>;
    const connections = 1500 + 2000 + 200;
    console.info(`[flood] answers ${JSON.stringify(answers)}; gateway CPU ${cpu.toFixed(2)} s = ${((cpu / connections) * 1e6).toFixed(0)} µs per refused connection`);
    // Wrong passwords: the budget (10) reaches scrypt, then 429 answers, then resets at accept before TLS.
    expect(answers['401'] ?? 0).toBeLessThanOrEqual(10);
    expect(answers['429'] ?? 0).toBeGreaterThanOrEqual(1);
    expect(answers.reset ?? 0).toBeGreaterThan(1500);
    expect(answers.timeout ?? 0).toBe(0);
    const rejections = await metric('quicgate_rejections_total');
    expect((rejections.get('reason="auth_failed"') ?? 0) - (rejectionsBefore.get('reason="auth_failed"') ?? 0)).toBe(answers['401'] ?? 0);
    expect(result.idle!.stillOpen).toBe(0);
    // Generous: ~0.1-0.3 ms were measured per refused connection (bench/flood.ts); 2 ms would mean TLS or scrypt per attempt.
    expect(cpu / connections).toBeLessThan(0.002);

    // 2. The same flood again while the good client runs iperf3 and ping through the tunnel: its session stays
    //    up and its traffic flows (the rate goal, >= 0.8 of alone, is the bench's: the flooding process shares
    //    this machine's cores, which a test cannot pin down).
    const alone = await iperf(topo, topo.server, topo.clients[1]!, GW4, 5300, ['-t', '4']);
    const running = flood({ idle: 1500, passwords: 2000, garbage: 200, holdMs: 20_000 });
    await sleep(300);
    const [tcp, ping] = await Promise.all([
      iperf(topo, topo.server, topo.clients[1]!, GW4, 5301, ['-t', '4']),
      topo.exec(topo.clients[1]!, 'ping', ['-c', '20', '-i', '0.2', '-W', '3', GW4]),
    ]);
    await running;
    console.info(`[flood] good client alone ${mbit(alone.receivedBps).toFixed(1)} Mbit/s, during the flood ${mbit(tcp.receivedBps).toFixed(1)} Mbit/s (${(tcp.receivedBps / alone.receivedBps).toFixed(2)})`);
    expect(tcp.receivedBps).toBeGreaterThan(0.1 * alone.receivedBps);
    expect(Number(/(\d+) received/.exec(ping.stdout)?.[1] ?? 0)).toBeGreaterThanOrEqual(18);
    expect(gateway.running).toBe(true);
    expect(gateway.lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(good.lines.filter((l) => l.msg === 'session closed')).toEqual([]);
  });

  it('repeated floods do not grow the gateway memory', async () => {
    const rss: number[] = [];
    for (let round = 0; round < 3; round++) {
      await flood({ idle: 600, passwords: 300, garbage: 100, holdMs: 20_000 });
      await sleep(1500);
      rss.push(footprint(gateway.pid).rssKb);
    }
    console.info(`[flood] gateway RSS after each flood: ${rss.map((k) => (k / 1024).toFixed(1)).join(', ')} MiB`);
    expect(rss[2]! - rss[0]!).toBeLessThan(40 * 1024);
    expect((await metric('quicgate_connections')).get('state="open"')).toBeLessThanOrEqual(1);
  });

  it('a second gateway on the port in use names the address, the port and the cause', async () => {
    const second = new GatewayFiles();
    try {
      await second.writeUsers(USERS);
      second.writeServer(SERVER_YAML.replace('port: 9090', 'port: 9091'));
      const proc = new QuicgateProcess(topo.spawn(topo.server, process.execPath, [BIN, 'server', '--config', second.serverFile]), 'second');
      const exit = await proc.exited;
      expect(exit.code).toBe(1);
      expect(proc.stderrText.join('\n')).toMatch(/quicgate: QG_ERR_LISTEN: .*192\.0\.2\.1:4433 \(TCP\): the address and port are already in use.*\(EADDRINUSE\)/);
      const failed = proc.lines.find((l) => l.msg === 'gateway failed to start');
      expect(failed).toMatchObject({ code: 'QG_ERR_LISTEN', address: '192.0.2.1', port: 4433, protocol: 'TCP', cause: 'EADDRINUSE' });
      expect(gateway.running).toBe(true);
    } finally {
      second.cleanup();
    }
  });
});
