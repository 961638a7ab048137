/**
 * Floods from one host against a real gateway in network namespaces (issue 12, section 1):
 *
 *   qge-…-s   gateway 192.0.2.1 (admin API on its loopback)
 *   qge-…-c1  the flooding host: test/e2e/helpers/flood-client.mjs (real TLS / HTTP/2 clients, own process)
 *   qge-…-c2  good: the real client, iperf3 and ping through the tunnel meanwhile
 *
 * Idle TLS connections are closed by the handshake deadline or reset at accept by the per-source limit, and
 * counted; a flood of idle connections, wrong passwords and garbage leaves the good client its traffic (bound
 * generous here; the goals 0.8 / +10 ms are measured by bench/flood.ts); five floods from many sources in a row
 * do not grow the gateway's memory (the issue's +16 MiB, read after a forced GC and malloc_trim by
 * bench/lib/mem-probe.mjs, preloaded into this file's gateway) and its own trimmer gives freed memory back; a
 * second gateway on the port in use says where and why. Runs as root; fails (never skips) when it cannot.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, footprint, metricSamples, sleep } from './helpers/hostile-ops.js';
import type { Topology } from './helpers/netns.js';
import { BIN, GatewayFiles, QuicgateProcess, iperf, mbit, startClient, startTestbed, stopTestbed, type TestUser } from './helpers/quicgate.js';

const FLOOD = resolve(import.meta.dirname, 'helpers/flood-client.mjs');
const PROBE = resolve(import.meta.dirname, '../../bench/lib/mem-probe.mjs');
const MiB = 1024 * 1024;
/** Extra source addresses of the flooding namespace for the memory test: 16 × 64 per source > max_pending. */
const SOURCES = Array.from({ length: 16 }, (_, i) => `192.0.2.${100 + i}`);
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
memory: { trim_after_freed: 8 MiB }
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

/** One line of bench/lib/mem-probe.mjs (bytes), started with MEMPROBE_TRIM_FROM=1. */
interface MemProbe {
  readonly rss: number;
  readonly heapUsed: number;
  readonly malloc: { readonly inUse: number; readonly free: number };
  readonly trimmed: { readonly rss: number };
}

/** Forced GC in the gateway, its figures, then malloc_trim and RSS again (SIGUSR2 to the probe). */
async function probe(): Promise<MemProbe> {
  const from = gateway.lines.length;
  gateway.signal('SIGUSR2');
  const line = (await gateway.waitForMsg('memprobe', 60_000, from)) as unknown as MemProbe;
  if (line.malloc === null) throw new Error('the gateway reports no malloc figures (TUN addon without mallocStats, or not glibc)');
  return line;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

beforeAll(async () => {
  // The probe (SIGUSR2: forced GC, figures, malloc_trim) is only used by the memory test; the rest never signals it.
  ({ topo, files, gateway } = await startTestbed(2, USERS, SERVER_YAML, { MEMPROBE_TRIM_FROM: '1' }, ['--expose-gc', '--import', PROBE]));
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

  it('five floods from many sources in a row do not grow the gateway memory, and the gateway trims what they freed', async () => {
    // Live objects (malloc in use and V8 heap after a forced GC) and RSS after malloc_trim: what GC timing and
    // the allocator's keeping of freed chunks do to raw RSS (±40 MiB from flood to flood here) cannot decide it.
    for (const address of SOURCES) await topo.exec(topo.clients[0]!, 'ip', ['addr', 'add', `${address}/24`, 'dev', 'qgv0']);
    const rounds: MemProbe[] = [];
    for (let round = 0; round < 5; round++) {
      const result = await flood({ idle: 1000, passwords: 300, garbage: 100, holdMs: 12_000, localAddresses: SOURCES });
      expect(result.idle!.tls).toBeGreaterThan(PER_SOURCE); // more than one source's worth was held with TLS
      await sleep(1500);
      rounds.push(await probe());
    }
    const mib = (bytes: number): string => (bytes / MiB).toFixed(1);
    console.info(
      `[flood] after each flood (forced GC): malloc in use ${rounds.map((p) => mib(p.malloc.inUse)).join(', ')} MiB, heap used ${rounds.map((p) => mib(p.heapUsed)).join(', ')} MiB; ` +
        `RSS ${rounds.map((p) => mib(p.rss)).join(', ')} MiB, after malloc_trim ${rounds.map((p) => mib(p.trimmed.rss)).join(', ')} MiB`,
    );
    const first = rounds[0]!;
    const fifth = rounds[4]!;
    expect(fifth.malloc.inUse - first.malloc.inUse).toBeLessThan(16 * MiB);
    expect(fifth.heapUsed - first.heapUsed).toBeLessThan(16 * MiB);
    expect(fifth.trimmed.rss - first.trimmed.rss).toBeLessThan(16 * MiB); // the goal
    // The gateway's own trimmer (memory.trim_after_freed 8 MiB here, a sample every 5 s) saw freed memory kept
    // resident after a flood and trimmed (the probe's trims do not count there); give its next sample a chance.
    let trims = 0;
    for (let waited = 0; waited <= 12_000 && trims < 1; waited += 1000) {
      trims = (await metric('quicgate_process_malloc_trims_total')).get('') ?? 0;
      if (trims < 1) await sleep(1000);
    }
    expect(trims).toBeGreaterThanOrEqual(1);
    expect(gateway.lines.filter((l) => l.msg === 'freed memory the allocator kept given back to the system (malloc_trim)').length).toBeGreaterThanOrEqual(1);
    expect((await metric('quicgate_connections')).get('state="open"')).toBeLessThanOrEqual(1);
    expect(gateway.lines.filter((l) => l.level >= 50)).toEqual([]);
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
