/**
 * A stalled history database against a real gateway in network namespaces (real CLI, real TUN, real SQLite
 * file): another connection holds the database's write lock, and the gateway's writer waits for it with a
 * 60 s busy timeout, so each write hangs in SQLite for up to a minute, in the history's worker thread. Ping
 * through the tunnel, a new session, and the admin API must not notice beyond what this busy machine adds;
 * /healthz and the metrics say the history is stalled; the queued rows are written once the lock is gone.
 *
 * Runs as root; fails (never skips) when it cannot.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type SqliteDatabase } from '../../src/history/sqlite.js';
import type { Topology } from './helpers/netns.js';
import { adminRequest, HostileClient, median, metricSamples, pingFrom, sleep } from './helpers/hostile-ops.js';
import { GATEWAY_URL, GatewayFiles, startClient, startTestbed, stopTestbed, type QuicgateProcess, type TestUser } from './helpers/quicgate.js';

const TOKEN = 'e2e-stall-admin-token-0123456789';
const GW4 = '198.18.0.1';
/** The stall a blocked event loop would add to every packet (the writer's busy timeout). */
const STALL_S = 60;
/** Far above what a busy 2-vCPU machine adds to a ping, far below the stall. */
const MAX_RTT_MS = 1000;
const USERS: TestUser[] = [
  { name: 'alice', password: 'alice-pw', bandwidth: 'unlimited' },
  { name: 'bob', password: 'bob-pw', bandwidth: 'unlimited' },
];
const SERVER_YAML = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/24 }
  ipv6: { network: "2001:db8:1::/64" }
keepalive_interval: 1s
admin: { listen: 127.0.0.1, port: 9090, token: ${TOKEN} }
history: { enabled: true, flush_interval: 500ms, busy_timeout: ${STALL_S}s }
log_level: info
`;

let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;
const admin = (method: string, path: string) => adminRequest(topo, TOKEN, method, path);

const ping = (count: number) => pingFrom(topo, topo.clients[0]!, GW4, count);

function sessionIds(): string[] {
  const db = openDatabase(join(files.dataDir, 'history.sqlite'), { readonly: true });
  try {
    return (db.prepare('SELECT id FROM sessions').all() as { id: string }[]).map((r) => r.id);
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  ({ topo, files, gateway } = await startTestbed(1, USERS, SERVER_YAML));
}, 90_000);

afterAll(() => stopTestbed({ topo, files }));

describe('history stall', () => {
  it(`forwards, admits and answers while every history write hangs for up to ${STALL_S} s; the rows follow the lock`, async () => {
    const pinger = startClient(topo, topo.clients[0]!, files.clientConfig('alice', 'alice', 'alice-pw'), 'alice-stall');
    await pinger.waitForMsg('tunnel up', 20_000);
    const before = await ping(20);
    expect(before.received).toBe(20);

    let locker: SqliteDatabase | null = openDatabase(join(files.dataDir, 'history.sqlite'));
    locker.exec('BEGIN EXCLUSIVE');
    let bobId = '';
    let bob: HostileClient | null = null;
    try {
      const mark = gateway.lines.length;
      await gateway.waitFor((l) => /history writes stalled/.test(l.msg), 15_000, mark);

      const during = await ping(50);
      const admitStarted = Date.now();
      bob = HostileClient.start(topo, topo.clients[0]!, { mode: 'hold', url: GATEWAY_URL, caFile: files.caFile, user: 'bob', password: 'bob-pw' });
      bobId = String((await bob.waitEvent('assign')).sessionId);
      const admitMs = Date.now() - admitStarted;
      const statsStarted = Date.now();
      const stats = await admin('GET', '/api/stats?window_hours=1');
      const statsMs = Date.now() - statsStarted;
      const health = await admin('GET', '/healthz');
      const metrics = String((await admin('GET', '/metrics')).body);

      console.log(
        `[history-stall] ping median ${median(before.rtts).toFixed(2)} ms before, ${median(during.rtts).toFixed(2)} ms while the database stalls ` +
          `(max ${Math.max(...during.rtts).toFixed(2)} ms, ${during.received}/50 received); new session admitted in ${admitMs} ms; /api/stats ${statsMs} ms`,
      );
      expect(during.received).toBe(50);
      expect(Math.max(...during.rtts)).toBeLessThan(MAX_RTT_MS);
      expect(stats.status).toBe(200);
      expect(statsMs).toBeLessThan(5000);
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({ checks: { history: 'degraded', historyError: expect.stringMatching(/stalled/) } });
      expect(metricSamples(metrics, 'quicgate_history_degraded').get('')).toBe(1);
      expect(sessionIds()).not.toContain(bobId); // queued, not written
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
      locker = null;
    }
    // The writer's wait ends with the lock: the queued start is written and health is ok again.
    const deadline = Date.now() + 20_000;
    while (!sessionIds().includes(bobId) || (await admin('GET', '/healthz')).status !== 200) {
      if (Date.now() > deadline) throw new Error('the queued row or healthy status did not come back within 20 s of the lock');
      await sleep(200);
    }
    bob?.child.kill('SIGTERM');
    await bob?.exited;
    expect(gateway.running).toBe(true);
    pinger.signal('SIGTERM');
    await pinger.exited;
  });
});
