/**
 * A hung PostgreSQL under a real gateway in network namespaces (real CLI, real TUN, real server from Debian's
 * package): every server process is SIGSTOPped while traffic flows through the tunnel, so the write out stays
 * unanswered (pg's query timeout is set beyond the stall), new connections wait in the listen backlog. Ping and
 * iperf3 through the tunnel, a new session, and the admin API must not notice beyond what this busy machine
 * adds; the gateway's event-loop delay stays far below the stall; /healthz and the metrics say the history is
 * stalled; once the server runs again the queued rows are written (nothing dropped: far below queue_limit).
 *
 * Runs as root; fails (never skips) when it cannot.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPostgres, type TestPostgres } from '../support/postgres-server.js';
import { adminRequest, HostileClient, median, metricSamples, pingFrom, sleep } from './helpers/hostile-ops.js';
import type { Topology } from './helpers/netns.js';
import { GATEWAY_URL, GatewayFiles, iperf, mbit, startClient, startTestbed, stopTestbed, type QuicgateProcess, type TestUser } from './helpers/quicgate.js';

const TOKEN = 'e2e-pg-stall-admin-token-0123456';
const GW4 = '198.18.0.1';
/** How long the server stays stopped at least (the stall detection, the measurements, a new session). */
const STALL_S = 15;
/** Far above what a busy 2-vCPU machine adds to a ping or to the event loop, far below the stall. */
const MAX_RTT_MS = 1000;
const MAX_LOOP_DELAY_S = 1;
/** iperf3 paced at this rate during the stall must carry at least half of it. */
const IPERF_MBIT = 20;
const USERS: TestUser[] = [
  { name: 'alice', password: 'alice-pw', bandwidth: 'unlimited' },
  { name: 'bob', password: 'bob-pw', bandwidth: 'unlimited' },
];

let server: TestPostgres;
let dbUrl: string;
let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;
const admin = (method: string, path: string) => adminRequest(topo, TOKEN, method, path);
const ping = (count: number) => pingFrom(topo, topo.clients[0]!, GW4, count);

interface Row {
  id: string;
  user: string;
  status: string;
  close_reason: string | null;
  bytes_in: number;
}

async function rows(): Promise<Row[]> {
  const client = new pg.Client({ connectionString: dbUrl });
  await client.connect();
  try {
    const r = await client.query<Row>('SELECT id, "user", status, close_reason, bytes_in::float8 AS bytes_in FROM sessions ORDER BY started_at');
    return r.rows;
  } finally {
    await client.end();
  }
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

/** The gateway's worst event-loop delay since the previous scrape (prom-client resets it per scrape), s. */
async function loopDelayMaxS(): Promise<number> {
  return metricSamples(String((await admin('GET', '/metrics')).body), 'nodejs_eventloop_lag_max_seconds').get('') ?? NaN;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - started };
}

beforeAll(async () => {
  server = await startTestPostgres();
  dbUrl = await server.createDatabase('quicgate');
  const serverYaml = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/24 }
  ipv6: { network: "2001:db8:1::/64" }
keepalive_interval: 1s
admin: { listen: 127.0.0.1, port: 9090, token: ${TOKEN} }
history:
  backend: postgres
  flush_interval: 500ms
  postgres:
    url: "${server.socketUrl('quicgate')}"
    query_timeout: 120s
log_level: info
`;
  ({ topo, files, gateway } = await startTestbed(1, USERS, serverYaml));
}, 120_000);

afterAll(async () => {
  await stopTestbed({ topo, files });
  await server?.dispose();
});

describe('history stall on PostgreSQL', () => {
  it(`forwards, admits and answers while every PostgreSQL process is stopped for ${STALL_S}+ s; the rows follow its return`, async () => {
    const pinger = startClient(topo, topo.clients[0]!, files.clientConfig('alice', 'alice', 'alice-pw'), 'alice-pg-stall');
    await pinger.waitForMsg('tunnel up', 20_000);
    const alice = await until('alice\'s row in PostgreSQL', 20_000, async () => (await rows()).find((r) => r.user === 'alice' && r.status === 'open') ?? null);
    await until('the history ok', 20_000, async () => ((await admin('GET', '/healthz')).status === 200 ? true : null));
    await loopDelayMaxS();
    const before = await ping(20);
    const loopBefore = await loopDelayMaxS();
    expect(before.received).toBe(20);

    let bob: HostileClient | null = null;
    let bobId = '';
    const mark = gateway.lines.length;
    const pausedAt = Date.now();
    server.pause();
    try {
      await gateway.waitFor((l) => /history writes stalled/.test(l.msg), 15_000, mark);
      await loopDelayMaxS();
      const [during, load] = await Promise.all([
        ping(50),
        iperf(topo, topo.server, topo.clients[0]!, GW4, 5201, ['-t', '5', '-b', `${IPERF_MBIT}M`]),
      ]);
      const admitted = await timed(async () => {
        bob = HostileClient.start(topo, topo.clients[0]!, { mode: 'hold', url: GATEWAY_URL, caFile: files.caFile, user: 'bob', password: 'bob-pw' });
        return String((await bob.waitEvent('assign')).sessionId);
      });
      bobId = admitted.value;
      const stats = await timed(() => admin('GET', '/api/stats?window_hours=1'));
      const past = await timed(() => admin('GET', '/api/history/sessions?window_hours=1'));
      const health = await admin('GET', '/healthz');
      const metrics = String((await admin('GET', '/metrics')).body);
      const loopDuring = metricSamples(metrics, 'nodejs_eventloop_lag_max_seconds').get('') ?? NaN;

      console.log(
        `[history-pg-stall] ping median ${median(before.rtts).toFixed(2)} ms before, ${median(during.rtts).toFixed(2)} ms while PostgreSQL is stopped ` +
          `(max ${Math.max(...during.rtts).toFixed(2)} ms, ${during.received}/50 received); iperf3 ${mbit(load.receivedBps).toFixed(1)} of ${IPERF_MBIT} Mbit/s; ` +
          `gateway event-loop delay max ${(loopBefore * 1000).toFixed(1)} ms before, ${(loopDuring * 1000).toFixed(1)} ms during; ` +
          `new session admitted in ${admitted.ms} ms; /api/stats ${stats.ms} ms (${stats.value.status}); /api/history/sessions ${past.ms} ms (${past.value.status} ${JSON.stringify(past.value.body).slice(0, 40)})`,
      );
      expect(during.received).toBe(50);
      expect(Math.max(...during.rtts)).toBeLessThan(MAX_RTT_MS);
      expect(mbit(load.receivedBps)).toBeGreaterThan(IPERF_MBIT / 2);
      expect(loopDuring).toBeLessThan(MAX_LOOP_DELAY_S);
      expect(bobId).not.toBe('');
      expect(stats.value.status).toBe(200);
      expect(stats.ms).toBeLessThan(5000);
      // A degraded history is not asked: the past sessions answer at once as not available, never held by the server.
      expect(past.ms).toBeLessThan(5000);
      expect(past.value).toMatchObject({ status: 200, body: { available: false } });
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({ checks: { history: 'degraded', historyError: expect.stringMatching(/stalled/) } });
      expect(metricSamples(metrics, 'quicgate_history_degraded').get('')).toBe(1);
      expect(metricSamples(metrics, 'quicgate_history_pending_records').get('')).toBeGreaterThan(0); // bob's start, at least
      expect(metricSamples(metrics, 'quicgate_history_dropped_records_total').get('')).toBe(0);
      const left = STALL_S * 1000 - (Date.now() - pausedAt);
      if (left > 0) {
        const more = await ping(Math.ceil(left / 100));
        expect(more.received).toBe(more.rtts.length);
        expect(more.rtts.length).toBe(Math.ceil(left / 100));
      }
    } finally {
      server.resume();
    }
    // The write out since the pause is answered, the queue follows: bob's row, alice's counters, health ok.
    const bobRow = await until('bob\'s row in PostgreSQL', 30_000, async () => (await rows()).find((r) => r.id === bobId) ?? null);
    expect(bobRow).toMatchObject({ user: 'bob', status: 'open' });
    await until('the history ok again', 30_000, async () => ((await admin('GET', '/healthz')).status === 200 ? true : null));
    await until('alice\'s counters written after the stall', 20_000, async () => {
      const now = (await rows()).find((r) => r.id === alice.id);
      return now !== undefined && now.bytes_in > alice.bytes_in ? now : null;
    });
    (bob as HostileClient | null)?.child.kill('SIGTERM');
    await (bob as HostileClient | null)?.exited;
    await until('bob\'s row closed', 20_000, async () => ((await rows()).find((r) => r.id === bobId)?.status === 'closed' ? true : null));
    const metrics = String((await admin('GET', '/metrics')).body);
    expect(metricSamples(metrics, 'quicgate_history_dropped_records_total').get('')).toBe(0);
    expect(gateway.running).toBe(true);
    pinger.signal('SIGTERM');
    await pinger.exited;
  }, 180_000);
});
