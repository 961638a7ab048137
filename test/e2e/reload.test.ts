/**
 * Reload across the process boundary (issue 12 §2): SIGHUP applies the live settings (allow_client_to_client
 * for sessions already up, log_level), reports every changed key with how it took effect (log and admin API),
 * keeps restart settings, and a quota throttle survives it: throttled by quota, SIGHUP, still throttled.
 */
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/config/password.js';
import { adminRequest, sleep } from './helpers/hostile-ops.js';
import { removeStaleNamespaces, requireNetnsSupport, Topology } from './helpers/netns.js';
import { GatewayFiles, iperf, mbit, startClient, startGateway, type QuicgateProcess } from './helpers/quicgate.js';

const TOKEN = 'e2e-reload-admin-token-0123456789';
const GW4 = '198.18.0.1';

function serverYaml(overrides: { c2c: boolean; logLevel: string; shapingDelay: string; h2: boolean }): string {
  return `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/24 }
  ipv6: null
keepalive_interval: 1s
shaping_delay: ${overrides.shapingDelay}
allow_client_to_client: ${overrides.c2c}
transports: { h2: ${overrides.h2} }
admin: { listen: 127.0.0.1, port: 9090, token: ${TOKEN} }
log_level: ${overrides.logLevel}
`;
}

let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;
let hashes: Record<string, string>;

async function writeUsers(bobBandwidth: string): Promise<void> {
  writeFileSync(
    files.usersFile,
    `users:
  - { name: alice, password_hash: "${hashes.alice}", bandwidth: unlimited }
  - { name: carol, password_hash: "${hashes.carol}", bandwidth: unlimited }
  - name: bob
    password_hash: "${hashes.bob}"
    bandwidth: ${bobBandwidth}
    quota: { bytes: 2 MB, period: day, action: throttle, throttle_rate: 2 Mbit/s }
`,
  );
}

async function sighup(): Promise<Record<string, unknown>> {
  const from = gateway.lines.length;
  gateway.signal('SIGHUP');
  return gateway.waitFor((l) => l.msg === 'config reloaded', 10_000, from);
}

async function ping(from: string, to: string): Promise<boolean> {
  try {
    await topo.exec(from, 'ping', ['-c', '2', '-i', '0.3', '-W', '1', to], 5000);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  await requireNetnsSupport();
  await removeStaleNamespaces();
  topo = await Topology.create(2);
  files = new GatewayFiles();
  hashes = Object.fromEntries(await Promise.all(['alice', 'bob', 'carol'].map(async (n) => [n, await hashPassword(`${n}-pw`, { ln: 10, r: 8, p: 1 })] as const)));
  await writeUsers('100 Mbit/s');
  files.writeServer(serverYaml({ c2c: false, logLevel: 'info', shapingDelay: '50ms', h2: true }));
  // Client-to-client packets go out of the gateway's TUN and back in: the namespace forwards (its own sysctl).
  await topo.exec(topo.server, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  gateway = startGateway(topo, files);
  await gateway.waitReady();
}, 90_000);

afterAll(async () => {
  await topo?.destroy();
  files?.cleanup();
});

describe('reload', () => {
  it('applies allow_client_to_client to live sessions and log_level at once, and reports every changed key', async () => {
    const a = startClient(topo, topo.clients[0]!, files.clientConfig('a', 'alice', 'alice-pw'), 'client-a');
    const c = startClient(topo, topo.clients[1]!, files.clientConfig('c', 'carol', 'carol-pw'), 'client-c');
    try {
      await a.waitForMsg('tunnel up', 30_000);
      const cUp = await c.waitForMsg('tunnel up', 30_000);
      expect(await ping(topo.clients[0]!, String(cUp.ipv4))).toBe(false);

      files.writeServer(serverYaml({ c2c: true, logLevel: 'warn', shapingDelay: '80ms', h2: false }));
      const reloaded = await sighup();
      expect(reloaded.changed).toEqual(
        expect.arrayContaining(['shaping_delay (restart)', 'allow_client_to_client (live)', 'transports (restart)', 'log_level (live)']),
      );
      const warned = await gateway.waitForMsg('these settings change only with a restart', 5_000);
      expect(warned.keys).toEqual(expect.arrayContaining(['shaping_delay', 'transports']));
      // Same sessions, no reconnect: client-to-client passes now.
      expect(await ping(topo.clients[0]!, String(cUp.ipv4))).toBe(true);
      expect(a.lines.filter((l) => l.msg === 'tunnel up')).toHaveLength(1);

      // log_level warn: a new session's info line is no longer written.
      const before = gateway.lines.length;
      const b = startClient(topo, topo.clients[1]!, files.clientConfig('b1', 'bob', 'bob-pw', { tun: 'qgc1' }), 'client-b1');
      await b.waitForMsg('tunnel up', 30_000);
      b.signal('SIGTERM');
      await b.exited;
      await sleep(500);
      expect(gateway.lines.slice(before).filter((l) => l.msg === 'session opened')).toEqual([]);

      // The admin API answers with every key that still differs, and the running transports are kept.
      files.writeServer(serverYaml({ c2c: true, logLevel: 'info', shapingDelay: '80ms', h2: false }));
      const answer = await adminRequest(topo, TOKEN, 'POST', '/api/reload');
      expect(answer.status).toBe(200);
      const body = answer.body as { changed: { key: string; effect: string }[]; needRestart: string[] };
      expect(body.changed).toEqual(
        expect.arrayContaining([
          { key: 'log_level', effect: 'live' },
          { key: 'shaping_delay', effect: 'restart' },
          { key: 'transports', effect: 'restart' },
        ]),
      );
      expect(body.needRestart).toEqual(expect.arrayContaining(['shaping_delay', 'transports']));
    } finally {
      a.signal('SIGTERM');
      c.signal('SIGTERM');
      await Promise.all([a.exited, c.exited]);
    }
  });

  it('keeps a quota throttle through SIGHUP: throttled by quota, SIGHUP, still throttled', async () => {
    const b = startClient(topo, topo.clients[0]!, files.clientConfig('b2', 'bob', 'bob-pw'), 'client-b2');
    try {
      const up = await b.waitForMsg('tunnel up', 30_000);
      // Spend the 2 MB quota, then the gateway throttles bob to 2 Mbit/s.
      await iperf(topo, topo.server, topo.clients[0]!, GW4, 5201, ['-t', '2']);
      const deadline = Date.now() + 10_000;
      for (;;) {
        const { body } = await adminRequest(topo, TOKEN, 'GET', '/api/users/bob');
        if ((body as { quota?: { exceeded?: boolean } }).quota?.exceeded === true) break;
        if (Date.now() > deadline) throw new Error(`bob's quota not spent: ${JSON.stringify(body)}`);
        await sleep(200);
      }
      await sleep(1500); // the next quota tick puts the throttle on
      const throttled = await iperf(topo, topo.server, topo.clients[0]!, GW4, 5202, ['-t', '3']);
      expect(mbit(throttled.receivedBps)).toBeLessThan(3);

      // A reload that sets bob's configured bandwidth again (raised): the throttle stays in force throughout.
      await writeUsers('200 Mbit/s');
      await sighup();
      const after = await iperf(topo, topo.server, topo.clients[0]!, GW4, 5203, ['-t', '3']);
      process.stderr.write(`[reload quota] throttled ${mbit(throttled.receivedBps).toFixed(2)} Mbit/s, after SIGHUP ${mbit(after.receivedBps).toFixed(2)} Mbit/s\n`);
      expect(mbit(after.receivedBps)).toBeLessThan(3);
      void up;
    } finally {
      b.signal('SIGTERM');
      await b.exited;
    }
  });
});
