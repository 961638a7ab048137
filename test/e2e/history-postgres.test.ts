/**
 * The history in a real PostgreSQL (Debian's package, started by this test) behind a real gateway in network
 * namespaces: a session's row appears in PostgreSQL with the gateway's id and in the admin API's history;
 * the gateway SIGKILLed and started again closes its row as `crash`; PostgreSQL stopped mid-traffic: pings go
 * on, /healthz says degraded, a new session is admitted, and its row is written once the server is back. The gateway reaches the server through
 * its unix socket (the file system is shared across network namespaces), with password auth.
 *
 * Runs as root; fails (never skips) when it cannot.
 */
import { hostname } from 'node:os';
import { pgSessionRows, type PgSessionRow } from './helpers/history-rows.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPostgres, type TestPostgres } from '../support/postgres-server.js';
import { adminRequest, sleep } from './helpers/hostile-ops.js';
import type { Topology } from './helpers/netns.js';
import { GatewayFiles, startClient, startGateway, startTestbed, stopTestbed, type QuicgateProcess, type TestUser } from './helpers/quicgate.js';

const TOKEN = 'e2e-pg-history-admin-token-01234';
const USERS: TestUser[] = [{ name: 'alice', password: 'alice-pw', bandwidth: 'unlimited' }];

let server: TestPostgres;
let dbUrl: string;
let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;
const admin = (method: string, path: string) => adminRequest(topo, TOKEN, method, path);

const rows = (): Promise<PgSessionRow[]> => pgSessionRows(dbUrl);

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
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
log_level: info
`;
  ({ topo, files, gateway } = await startTestbed(1, USERS, serverYaml));
}, 120_000);

afterAll(async () => {
  await stopTestbed({ topo, files });
  await server?.dispose();
});

describe('history in PostgreSQL', () => {
  it('sessions appear in PostgreSQL and the admin API; after a SIGKILL the restarted gateway closes its row as crash', async () => {
    expect(gateway.stderrText.join('\n')).not.toContain(server.password);
    const client = startClient(topo, topo.clients[0]!, files.clientConfig('alice', 'alice', 'alice-pw'), 'alice-pg');
    await client.waitForMsg('tunnel up', 20_000);
    await topo.exec(topo.clients[0]!, 'ping', ['-c', '5', '-i', '0.2', '-W', '5', '198.18.0.1']);

    const open = await until('the open session row in PostgreSQL', 20_000, async () => {
      const r = (await rows()).filter((x) => x.status === 'open' && Number(x.bytes_in) > 0);
      return r.length === 1 ? r[0]! : null;
    });
    expect(open).toMatchObject({ user: 'alice', gateway_id: hostname() });

    const past = await admin('GET', '/api/history/sessions?window_hours=1');
    expect(past.status).toBe(200);
    expect(past.body).toMatchObject({ available: true, sessions: [expect.objectContaining({ id: open.id, user: 'alice', status: 'open', gateway: hostname() })] });
    const filtered = await admin('GET', `/api/history/sessions?window_hours=1&gateway=no-such-gateway`);
    expect(filtered.body).toMatchObject({ available: true, sessions: [] });
    const stats = await admin('GET', '/api/stats?window_hours=1');
    expect(stats.body).toMatchObject({ sessionsInWindow: 1 });
    const health = await admin('GET', '/healthz');
    expect(health.body).toMatchObject({ checks: { history: 'ok' } });

    gateway.signal('SIGKILL');
    await gateway.exited;
    expect((await rows()).find((r) => r.id === open.id)?.status).toBe('open'); // nobody closed it: the process died
    gateway = startGateway(topo, files);
    await gateway.waitForMsg('gateway up', 30_000);
    await gateway.waitFor((l) => l.msg === "history: closed sessions left open by a crash (reason 'crash')", 20_000);
    expect((await rows()).find((r) => r.id === open.id)).toMatchObject({ status: 'closed', close_reason: 'crash', gateway_id: hostname() });
    const after = await admin('GET', '/api/history/sessions?window_hours=1');
    expect(after.body).toMatchObject({ sessions: expect.arrayContaining([expect.objectContaining({ id: open.id, status: 'closed', endReason: 'crash' })]) });
    expect(gateway.stderrText.join('\n')).not.toContain(server.password);

    client.signal('SIGTERM');
    await client.exited;
  });

  it('PostgreSQL stopped mid-traffic: forwarding and admission go on, health degraded, the rows follow its return', async () => {
    const first = startClient(topo, topo.clients[0]!, files.clientConfig('alice', 'alice', 'alice-pw'), 'alice-pg-down');
    await first.waitForMsg('tunnel up', 30_000);
    await until('the history ok', 20_000, async () => ((await admin('GET', '/healthz')).status === 200 ? true : null));
    const known = new Set((await rows()).map((r) => r.id));
    await server.stop();
    const mark = gateway.lines.length;
    try {
      const out = await topo.exec(topo.clients[0]!, 'ping', ['-c', '20', '-i', '0.1', '-W', '5', '198.18.0.1']);
      expect(Number(/(\d+) received/.exec(out.stdout)?.[1] ?? 0)).toBe(20);
      await gateway.waitFor((l) => l.msg === 'history writes failing; queueing and retrying', 20_000, mark);
      const health = await admin('GET', '/healthz');
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({ checks: { history: 'degraded' } });
      expect(JSON.stringify(health.body)).not.toContain(server.password);
      // A new session while the database is down: admitted at once, its row queued.
      first.signal('SIGTERM');
      await first.exited;
      const second = startClient(topo, topo.clients[0]!, files.clientConfig('alice', 'alice', 'alice-pw'), 'alice-pg-down-2');
      await second.waitForMsg('tunnel up', 20_000);
      second.signal('SIGTERM');
      await second.exited;
    } finally {
      await server.start();
    }
    const fresh = await until('the sessions of the outage in PostgreSQL, ended', 60_000, async () => {
      const r = (await rows()).filter((x) => !known.has(x.id) && x.status === 'closed');
      return r.length >= 1 ? r : null;
    });
    expect(fresh.every((r) => r.gateway_id === hostname() && r.close_reason === 'client_closed')).toBe(true);
    await until('the history ok again', 30_000, async () => ((await admin('GET', '/healthz')).status === 200 ? true : null));
    expect(gateway.stderrText.join('\n')).not.toContain(server.password);
  });
});
