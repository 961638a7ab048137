/**
 * What an open console page costs the gateway at 1,000 sessions: a real Gateway (memory TUN and transport)
 * with its operator surface, 1,000 sessions of 50 users, and 0, 1 and 10 pages reading the live feed
 * (GET /api/console/events) over real HTTP. Prints the process CPU per second of wall time for each, the
 * ratio 10 pages / 1 page, and the snapshot's build time and size. The feed builds one snapshot per second for
 * all pages, so pages add socket writes, not snapshots.   Run: npx tsx bench/console-feed.ts
 */
import { request } from 'node:http';
import { startHarness, TOKEN } from '../test/gateway/operator-harness.js';
import { sessionLimits, testPasswordHash, userConfig } from '../test/support/config-fixture.js';

const SESSIONS = 1000;
const USERS = 50;
const SECONDS = 6;

const users = await Promise.all(
  Array.from({ length: USERS }, async (_, i) => userConfig(`u${i}`, { passwordHash: await testPasswordHash(`pw-u${i}`), bandwidth: 1_250_000 })),
);
const h = await startHarness({
  config: {
    users,
    networks: { ipv4: { cidr: '198.18.0.0/16', gateway: '198.18.0.1' }, ipv6: { cidr: '2001:db8:1::/64', gateway: '2001:db8:1::1' } },
    limits: sessionLimits({ idleTimeoutMs: 0, maxSessionsPerUser: 100, maxTotalSessions: 5000 }),
  },
});
for (let i = 0; i < SESSIONS; i++) await h.connect(`u${i % USERS}`);

const backend = h.surface.backend;
for (let i = 0; i < 20; i++) JSON.stringify(backend.overview());
const t0 = performance.now();
let bytes = 0;
for (let i = 0; i < 100; i++) bytes = JSON.stringify(backend.overview()).length;
const snapshotMs = (performance.now() - t0) / 100;

/** Opens `pages` event streams (bytes read and dropped) and returns the CPU ms per wall second while open. */
async function cpuWith(pages: number): Promise<{ cpuMsPerSecond: number; receivedPerPage: number }> {
  let received = 0;
  const streams = Array.from({ length: pages }, () => {
    const req = request(`${h.base}/api/console/events`, { headers: { Authorization: `Bearer ${TOKEN}` } }, (res) => res.on('data', (c: Buffer) => void (received += c.length)));
    req.end();
    return req;
  });
  await new Promise((r) => setTimeout(r, 1500));
  received = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const used = process.cpuUsage(cpu);
  const wall = (performance.now() - start) / 1000;
  for (const s of streams) s.destroy();
  await new Promise((r) => setTimeout(r, 300));
  return { cpuMsPerSecond: (used.user + used.system) / 1000 / wall, receivedPerPage: pages === 0 ? 0 : received / pages / wall };
}

const none = await cpuWith(0);
const one = await cpuWith(1);
const ten = await cpuWith(10);
console.log(`sessions: ${backend.listSessions().length}; one snapshot: ${snapshotMs.toFixed(1)} ms to build and serialise, ${(bytes / 1024).toFixed(0)} KiB`);
console.log(`CPU of the gateway process (ms per second): no page ${none.cpuMsPerSecond.toFixed(1)}, 1 page ${one.cpuMsPerSecond.toFixed(1)}, 10 pages ${ten.cpuMsPerSecond.toFixed(1)}`);
console.log(`each page receives ${(one.receivedPerPage / 1024).toFixed(0)} KiB/s; ratio 10 pages / 1 page (above the idle floor): ${((ten.cpuMsPerSecond - none.cpuMsPerSecond) / Math.max(0.1, one.cpuMsPerSecond - none.cpuMsPerSecond)).toFixed(2)}`);
await h.cleanup();
