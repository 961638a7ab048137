/**
 * bench/scale.ts - how many sessions, at what memory, and what the per-connect / per-packet work costs.
 *
 *   sudo npx tsx bench/scale.ts           (all parts; needs npm run build for the gateway/client processes)
 *   npx tsx bench/scale.ts                (not root: only the in-process micro-benchmarks)
 *   SESSIONS=1000 PROCS=4 CONC=16 sudo -E npx tsx bench/scale.ts
 *
 * Parts and what they print:
 *   micro.registry   connect + disconnect in UserRegistry + AddressPool (allocate, add, remove, release), ops/s
 *   micro.forward    per packet: RouteTable.lookupV4 + TokenBucket.tryConsume over 1,000 peers, ns/packet, and
 *                    heap bytes/packet with the number of GCs during the loop (0 and 0: no allocation)
 *   sessions         (root) a real gateway in namespace qgb-sc…-s; PROCS client processes in one client
 *                    namespace open SESSIONS WebTransport/HTTP/2 sessions (connectTunnel, no TUN on the client
 *                    side; CONC in flight per process): sessions/s, median connect time, failures
 *   memory           gateway RSS before and after (idle, 2 s settled): bytes per idle session (goal < 64 KiB)
 *   traffic          every session sends one ICMP echo to 198.18.0.1 through the gateway's TUN: replies / sessions
 *   teardown         closing all sessions, s
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { TokenBucket } from '../src/gateway/bucket.js';
import { TunnelPeer } from '../src/gateway/peer.js';
import { AddressPool } from '../src/gateway/pool.js';
import { effectiveLimit, UserRegistry } from '../src/gateway/registry.js';
import { RouteTable } from '../src/gateway/route-table.js';
import { newCounters, type Session } from '../src/gateway/session.js';
import { ipv4ToWord } from '../src/packet/ip.js';
import { ROOT, sleep, Topology, type Proc } from './lib/netns.js';

const SESSIONS = Number(process.env.SESSIONS ?? 1000);
const PROCS = Number(process.env.PROCS ?? 4);
const CONC = Number(process.env.CONC ?? 16);
const MAX_TIME = Number(process.env.MAX_TIME ?? 300);
setTimeout(() => {
  console.error(`scale.ts: watchdog: MAX_TIME=${MAX_TIME}s reached`);
  process.exit(3);
}, MAX_TIME * 1000).unref();

const networks = { ipv4: { cidr: '198.18.0.0/15', gateway: '198.18.0.1' }, ipv6: { cidr: '2001:db8:1::/64', gateway: '2001:db8:1::1' } };

function microRegistry(): void {
  const registry = new UserRegistry();
  const pool = new AddressPool({ networks, users: [] } as unknown as ConstructorParameters<typeof AddressPool>[0]);
  const limit = effectiveLimit({ bandwidth: 10e6 / 8, burst: null } as unknown as Parameters<typeof effectiveLimit>[0]);
  const users = Array.from({ length: 100 }, (_, i) => `user${i}`);
  const ids = Array.from({ length: 1000 }, (_, i) => `conn-${i}`);
  const held: { id: string; a: ReturnType<AddressPool['allocate']> }[] = [];
  // Steady state: 1,000 sessions live; each op = connect one + disconnect the oldest.
  for (let i = 0; i < 1000; i++) {
    const user = users[i % users.length]!;
    held.push({ id: ids[i]!, a: pool.allocate(user) });
    registry.add(user, ids[i]!, limit);
  }
  const n = 100_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const old = held[i % 1000]!;
    registry.remove(old.id);
    pool.release(old.a);
    const user = users[(i * 7) % users.length]!;
    const id = `c${i}`;
    const a = pool.allocate(user);
    registry.add(user, id, limit);
    held[i % 1000] = { id, a };
  }
  const ns = Number(process.hrtime.bigint() - t0) / n;
  console.log(`micro.registry: ${(1e9 / ns).toFixed(0)} connect+disconnect pairs/s (${(ns / 1000).toFixed(2)} µs per pair; registry + address pool, IPv4+IPv6, 1,000 live)`);
}

function microForward(): void {
  const routes = new RouteTable();
  const peers: TunnelPeer[] = [];
  const bucket = new TokenBucket(1e12 / 8);
  for (let i = 0; i < 1000; i++) {
    const ip = `198.18.${(i >> 8) + 1}.${i & 255}`;
    const session = { ipv4: ip, ipv6: null, bucket, counters: newCounters() } as unknown as Session;
    const peer = new TunnelPeer(session);
    routes.add(peer);
    peers.push(peer);
  }
  const words = new Int32Array(peers.map((p) => p.v4));
  let gcs = 0;
  const obs = new PerformanceObserver((list) => {
    gcs += list.getEntries().length;
  });
  const run = (n: number): { ns: number; heap: number } => {
    let hits = 0;
    const h0 = process.memoryUsage().heapUsed;
    const t0 = process.hrtime.bigint();
    const now = performance.now();
    for (let i = 0; i < n; i++) {
      const peer = routes.lookupV4(words[i % 1000]!);
      if (peer !== undefined && peer.session.bucket!.tryConsume(1400, now)) hits++;
    }
    const ns = Number(process.hrtime.bigint() - t0) / n;
    const heap = process.memoryUsage().heapUsed - h0;
    if (hits < 0) console.log(hits);
    return { ns, heap };
  };
  run(200_000); // warm up (JIT)
  obs.observe({ entryTypes: ['gc'] });
  const n = 2_000_000;
  const r = run(n);
  obs.disconnect();
  void ipv4ToWord;
  console.log(`micro.forward: ${r.ns.toFixed(1)} ns per packet (route lookup + bucket check, 1,000 peers), heap ${(r.heap / n).toFixed(3)} B/packet, ${gcs} GCs during ${n} packets`);
}

function rssOf(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : NaN;
}

interface Line { event: string; [k: string]: unknown }
function jsonLines(p: Proc, event: string, from = 0): Promise<Line> {
  return p.waitFor(new RegExp(`"event":"${event}"`), 120_000, from).then((l) => JSON.parse(l) as Line);
}

async function sessions(): Promise<void> {
  const topo = new Topology('sc', 1);
  try {
    topo.build();
    await topo.writeUsers([{ name: 'scale', bandwidth: '100 Mbit/s', maxSessions: SESSIONS + 10 }]);
    const gw = await topo.startGateway(`
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/15, gateway: 198.18.0.1 }
  ipv6: { network: "2001:db8:1::/64" }
limits: { max_sessions_per_user: ${SESSIONS + 10}, max_total_sessions: ${SESSIONS + 10} }
auth_attempts: { per_source_per_minute: 1000000 }
log_level: info
history: { enabled: false }
`);
    await sleep(1500);
    const rss0 = rssOf(gw.pid);
    const per = Math.ceil(SESSIONS / PROCS);
    const clients: Proc[] = [];
    const t0 = performance.now();
    for (let i = 0; i < PROCS; i++) {
      const n = Math.min(per, SESSIONS - i * per);
      const p = topo.spawn(topo.clients[0]!, process.execPath, [join(ROOT, 'bench/lib/scale-client.mjs'), 'https://192.0.2.1:4433/', 'scale', 'scale-pw', topo.caFile, String(n), String(CONC)], `scale-client${i}`);
      clients.push(p);
    }
    const connected = await Promise.all(clients.map((c) => jsonLines(c, 'connected')));
    const seconds = (performance.now() - t0) / 1000;
    const ok = connected.reduce((a, l) => a + (l.ok as number), 0);
    const failed = connected.reduce((a, l) => a + (l.failed as number), 0);
    const medianMs = connected.map((l) => (l.medianMs as number | undefined) ?? NaN).sort((a, b) => a - b)[connected.length >> 1]!;
    console.log(`sessions: ${ok} established, ${failed} failed in ${seconds.toFixed(2)} s = ${(ok / seconds).toFixed(0)} sessions/s (${PROCS} client processes x ${CONC} in flight; median connect ${medianMs.toFixed(0)} ms incl. scrypt ln=10 check, assign)${failed ? ` first error: ${String(connected.find((l) => l.failed)?.firstError)}` : ''}`);
    await sleep(2000);
    const rss1 = rssOf(gw.pid);
    const clientRss = connected.reduce((a, l) => a + (l.rss as number), 0);
    console.log(`memory: gateway RSS ${(rss0 / 2 ** 20).toFixed(1)} -> ${(rss1 / 2 ** 20).toFixed(1)} MiB = ${((rss1 - rss0) / ok / 1024).toFixed(1)} KiB per idle session (goal < 64 KiB) [${(rss1 - rss0) / ok < 64 * 1024 ? 'PASS' : 'MISS'}]; clients ${(clientRss / ok / 1024).toFixed(1)} KiB per session`);
    const marks = clients.map((c) => c.lines.length);
    for (const c of clients) c.child.stdin?.write('ping\n');
    const pinged = await Promise.all(clients.map((c, i) => jsonLines(c, 'pinged', marks[i])));
    const replies = pinged.reduce((a, l) => a + (l.replies as number), 0);
    const pingS = Math.max(...pinged.map((l) => l.seconds as number));
    console.log(`traffic: ${replies} / ${ok} sessions got their ICMP echo reply through the gateway TUN within ${pingS.toFixed(2)} s [${replies === ok && ok === SESSIONS ? 'PASS' : 'MISS'}]; gateway RSS now ${(rssOf(gw.pid) / 2 ** 20).toFixed(1)} MiB`);
    const marks2 = clients.map((c) => c.lines.length);
    for (const c of clients) c.child.stdin?.write('close\n');
    const closed = await Promise.all(clients.map((c, i) => jsonLines(c, 'closed', marks2[i])));
    console.log(`teardown: ${ok} sessions closed in ${Math.max(...closed.map((l) => l.seconds as number)).toFixed(2)} s`);
  } finally {
    topo.destroySync();
  }
}

async function main(): Promise<void> {
  console.log(`# ${new Date().toISOString()} node ${process.version}, SESSIONS=${SESSIONS} PROCS=${PROCS} CONC=${CONC}`);
  microRegistry();
  microForward();
  if (process.getuid?.() === 0) await sessions();
  else console.log('sessions/memory/traffic: skipped (not root)');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('scale.ts failed:', err);
    process.exit(1);
  },
);
