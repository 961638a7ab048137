/**
 * bench/scale.ts - how many sessions, at what memory, and what the per-connect / per-packet work costs.
 *
 *   sudo npx tsx bench/scale.ts           (all parts; needs npm run build for the gateway/client processes)
 *   npx tsx bench/scale.ts                (not root: the micro-benchmarks and memory.floor only)
 *   SESSIONS=1000 PROCS=4 CONC=16 STEPS=4 sudo -E npx tsx bench/scale.ts
 *
 * Parts and what they print:
 *   micro.registry   connect + disconnect in UserRegistry + AddressPool (allocate, add, remove, release), ops/s
 *   micro.forward    per packet: RouteTable.lookupV4 + TokenBucket.tryConsume over 1,000 peers, ns/packet, and
 *                    heap bytes/packet with the number of GCs during the loop (0 and 0: no allocation)
 *   memory.floor     what Node itself costs per idle session: a bare node:http2 + TLS server (bench/lib/
 *                    h2-floor-server.mjs) holding SESSIONS loopback sessions with one CONNECT stream each
 *   sessions         (root) a real gateway (test/e2e/helpers: Topology, startGateway; namespaces qge-…) started
 *                    with --expose-gc and bench/lib/mem-probe.mjs; PROCS client processes in one client namespace
 *                    open SESSIONS WebTransport/HTTP/2 sessions in STEPS steps (connectTunnel, no TUN on the
 *                    client side; CONC in flight per process): sessions/s, median connect time, failures
 *   memory.*         per idle session, after each step (2 s idle): raw RSS (no GC), then SIGUSR2 to the probe:
 *                    forced full GC and RSS, V8 heap used/total, external. Printed: the plain delta from 0, and
 *                    the least-squares slope over the steps (leaves out one-time growth) split into V8 heap,
 *                    external and native; the goal (< 64 KiB) is judged by the slope, the other two are shown
 *   traffic          every session sends one ICMP echo to 198.18.0.1 through the gateway's TUN: replies / sessions
 *   teardown         closing all sessions, s; gateway memory after (forced GC): what closed sessions leave behind
 *
 * GATEWAY_ENV="K=V …" adds environment to the gateway only (e.g. glibc malloc tunables, to try them);
 * MEMPROBE_SNAPSHOT_DIR=dir also writes a heap snapshot per probe (inflates RSS: for finding objects only).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { TokenBucket } from '../src/gateway/bucket.js';
import { TunnelPeer } from '../src/gateway/peer.js';
import { AddressPool } from '../src/gateway/pool.js';
import { effectiveLimit, UserRegistry } from '../src/gateway/registry.js';
import { RouteTable } from '../src/gateway/route-table.js';
import { newCounters, type Session } from '../src/gateway/session.js';
import { ipv4ToWord } from '../src/packet/ip.js';
import { ensureCertificates } from '../src/transport/certs.js';
import { removeStaleNamespaces, Topology } from '../test/e2e/helpers/netns.js';
import { GATEWAY_URL, GatewayFiles, QuicgateProcess, startGateway, type LogLine } from '../test/e2e/helpers/quicgate.js';

const ROOT = join(import.meta.dirname, '..');
const PROBE = join(ROOT, 'bench/lib/mem-probe.mjs');
const SCALE_CLIENT = join(ROOT, 'bench/lib/scale-client.mjs');
const H2_FLOOR_SERVER = join(ROOT, 'bench/lib/h2-floor-server.mjs');
const SESSIONS = Number(process.env.SESSIONS ?? 1000);
const PROCS = Number(process.env.PROCS ?? 4);
const CONC = Number(process.env.CONC ?? 16);
/** Session counts at which the gateway's memory is probed: SESSIONS/STEPS, 2*SESSIONS/STEPS, ..., SESSIONS. */
const STEPS = Math.max(2, Number(process.env.STEPS ?? 4));
/** GATEWAY_ENV="A=1 B=2": extra environment of the gateway process only (e.g. glibc malloc tunables). */
const GATEWAY_ENV: Record<string, string> = Object.fromEntries(
  (process.env.GATEWAY_ENV ?? '').split(/\s+/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
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

function median(values: readonly number[]): number {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** VmRSS of a process without any GC (what a monitoring tool sees). */
function rssOf(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : NaN;
}

/** One line of bench/lib/mem-probe.mjs (bytes). */
interface MemProbe {
  readonly rss: number;
  readonly rssAnon: number;
  readonly rssFile: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
  readonly newSpace: number;
}

/** Forced full GC in the gateway (SIGUSR2 to its mem-probe), then its memory figures. */
async function probe(gw: QuicgateProcess): Promise<MemProbe> {
  const from = gw.lines.length;
  gw.signal('SIGUSR2');
  return (await gw.waitForMsg('memprobe', 60_000, from)) as unknown as MemProbe;
}

const MiB = (b: number): string => (b / 2 ** 20).toFixed(1);
const KiB = (b: number): string => (b / 1024).toFixed(1);

/**
 * Per-session KiB between two probes: RSS, split into the V8 heap (committed pages: heapTotal; of which live
 * objects: heapUsed), external (ArrayBuffer backing stores and other memory V8 is told about) and the rest:
 * native memory V8 does not see (OpenSSL, nghttp2, libuv, node's C++ objects, malloc overhead).
 */
function perSession(a: MemProbe, b: MemProbe, n: number): { rss: number; heapUsed: number; heapTotal: number; external: number; native: number; text: string } {
  const rss = (b.rss - a.rss) / n;
  const heapUsed = (b.heapUsed - a.heapUsed) / n;
  const heapTotal = (b.heapTotal - a.heapTotal) / n;
  const external = (b.external - a.external) / n;
  const native = rss - heapTotal - external;
  const text = `${KiB(rss)} KiB RSS = V8 heap ${KiB(heapTotal)} (live objects ${KiB(heapUsed)}) + external ${KiB(external)} + native ${KiB(native)}`;
  return { rss, heapUsed, heapTotal, external, native, text };
}

/** perSession() as the least-squares slope of each figure over several (sessions, probe) points. */
function perSessionFit(counts: readonly number[], probes: readonly MemProbe[]): ReturnType<typeof perSession> {
  const mean = (v: readonly number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
  const xm = mean(counts);
  const sxx = counts.reduce((a, x) => a + (x - xm) ** 2, 0);
  const fit = (pick: (p: MemProbe) => number): number => {
    const ys = probes.map(pick);
    const ym = mean(ys);
    return counts.reduce((a, x, i) => a + (x - xm) * (ys[i]! - ym), 0) / sxx;
  };
  // Expressed as two synthetic probes one session apart, so perSession() does the split and the text.
  const zero: MemProbe = { rss: 0, rssAnon: 0, rssFile: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0, newSpace: 0 };
  const one: MemProbe = { ...zero, rss: fit((p) => p.rss), heapUsed: fit((p) => p.heapUsed), heapTotal: fit((p) => p.heapTotal), external: fit((p) => p.external) };
  return perSession(zero, one, 1);
}

interface Connected {
  readonly ok: number;
  readonly failed: number;
  readonly firstError: string;
  readonly seconds: number;
  readonly connectMs: readonly number[];
  readonly rss: number;
}

function message(p: QuicgateProcess, msg: string, from: number): Promise<LogLine> {
  return p.waitForMsg(msg, 120_000, from);
}

/** Sends `command` to every client and waits for each one's `reply` line. */
async function command(clients: readonly QuicgateProcess[], line: string, reply: string): Promise<LogLine[]> {
  const marks = clients.map((c) => c.lines.length);
  for (const c of clients) c.child.stdin?.write(`${line}\n`);
  return Promise.all(clients.map((c, i) => message(c, reply, marks[i]!)));
}

async function sessions(): Promise<void> {
  await removeStaleNamespaces();
  const topo = await Topology.create(1);
  const files = new GatewayFiles();
  try {
    await files.writeUsers([{ name: 'scale', password: 'scale-pw', bandwidth: '100 Mbit/s', maxSessions: SESSIONS + 10 }]);
    files.writeServer(`
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/15, gateway: 198.18.0.1 }
  ipv6: { network: "2001:db8:1::/64" }
limits: { max_sessions_per_user: ${SESSIONS + 10}, max_total_sessions: ${SESSIONS + 10} }
auth_attempts: { per_source_per_minute: 1000000 }
log_level: info
history: { enabled: false }
`);
    const gw = startGateway(topo, files, { nodeArgs: ['--expose-gc', '--import', PROBE], env: GATEWAY_ENV });
    await gw.waitForMsg('gateway up');
    await sleep(1500);
    const raw0 = rssOf(gw.pid);
    const p0 = await probe(gw);

    // STEPS equal steps up to SESSIONS, each followed by 2 s idle, a raw RSS reading and a forced-GC probe.
    // Per-session cost = least-squares slope over the steps (not over 0 -> first step, where the one-time growth
    // lands: V8 new space, malloc arenas of the scrypt threads, code), and the plain delta from 0.
    const split = (total: number): number[] => Array.from({ length: PROCS }, (_, i) => Math.floor(total / PROCS) + (i < total % PROCS ? 1 : 0));
    const stepTargets = Array.from({ length: STEPS }, (_, k) => Math.round((SESSIONS * (k + 1)) / STEPS));
    const clients: QuicgateProcess[] = [];
    const connected: Connected[] = [];
    const counts: number[] = [];
    const raws: number[] = [];
    const probes: MemProbe[] = [];
    let seconds = 0;
    for (let k = 0; k < STEPS; k++) {
      const perProc = split(stepTargets[k]! - (k === 0 ? 0 : stepTargets[k - 1]!));
      const t = performance.now();
      let step: Connected[];
      if (k === 0) {
        for (let i = 0; i < PROCS; i++) {
          const args = [SCALE_CLIENT, GATEWAY_URL, 'scale', 'scale-pw', files.caFile, String(perProc[i]), String(CONC)];
          clients.push(new QuicgateProcess(topo.spawn(topo.clients[0]!, process.execPath, args, {}, { stdin: 'pipe' }), `scale-client${i}`));
        }
        step = (await Promise.all(clients.map((c) => message(c, 'connected', 0)))) as unknown as Connected[];
      } else {
        const marks = clients.map((c) => c.lines.length);
        clients.forEach((c, i) => c.child.stdin?.write(`open ${perProc[i]}\n`));
        step = (await Promise.all(clients.map((c, i) => message(c, 'connected', marks[i]!)))) as unknown as Connected[];
      }
      seconds += (performance.now() - t) / 1000;
      connected.push(...step);
      counts.push(connected.reduce((a, l) => a + l.ok, 0));
      await sleep(2000);
      raws.push(rssOf(gw.pid));
      probes.push(await probe(gw));
    }
    const ok = counts.at(-1)!;
    const failed = connected.reduce((a, l) => a + l.failed, 0);
    const medianMs = median(connected.flatMap((l) => l.connectMs));
    console.log(
      `sessions: ${ok} established, ${failed} failed in ${seconds.toFixed(2)} s = ${(ok / seconds).toFixed(0)} sessions/s (${PROCS} client processes x ${CONC} in flight, in ${STEPS} steps; median connect ${medianMs.toFixed(0)} ms incl. scrypt ln=10 check, assign)${failed ? ` first error: ${connected.find((l) => l.failed)?.firstError}` : ''}`,
    );
    const p1 = probes.at(-1)!;
    const raw1 = raws.at(-1)!;
    const clientRss = clients.map((c) => (c.lines.filter((l) => l.msg === 'connected').at(-1) as unknown as Connected).rss).reduce((a, b) => a + b, 0);
    const slope = perSessionFit(counts, probes);
    const delta = perSession(p0, p1, ok);
    const list = (values: readonly number[]): string => values.map(MiB).join(' -> ');
    console.log(`memory.raw: gateway RSS without forced GC ${list([raw0, ...raws])} MiB (at ${[0, ...counts].join(' / ')} sessions, 2 s idle each) = ${KiB((raw1 - raw0) / ok)} KiB per session from 0 (noisy: includes garbage and one-time growth); clients ${KiB(clientRss / ok)} KiB per session`);
    console.log(`memory.gc: gateway after forced full GCs: RSS ${list([p0, ...probes].map((p) => p.rss))} MiB; V8 heap used ${list([p0, ...probes].map((p) => p.heapUsed))} MiB; heap total ${list([p0, ...probes].map((p) => p.heapTotal))} MiB (new space ${MiB(p0.newSpace)} -> ${MiB(p1.newSpace)}); external ${MiB(p0.external)} -> ${MiB(p1.external)} MiB; RSS file-backed ${MiB(p0.rssFile)} -> ${MiB(p1.rssFile)} MiB`);
    console.log(`memory.delta: from 0 to ${ok} sessions (forced GC): ${delta.text}`);
    console.log(`memory.slope: least-squares over ${counts.join(' / ')} sessions (forced GC): ${slope.text}`);
    const verdict = (b: number): string => (b < 64 * 1024 ? 'PASS' : 'MISS');
    console.log(
      `memory.goal: per idle session < 64 KiB, judged by the slope of gateway RSS after a forced GC (${counts[0]} -> ${ok} sessions): ${KiB(slope.rss)} KiB [${verdict(slope.rss)}]; from 0 (incl. one-time growth) ${KiB(delta.rss)} KiB [${verdict(delta.rss)}]; raw RSS without GC ${KiB((raw1 - raw0) / ok)} KiB [${verdict((raw1 - raw0) / ok)}]`,
    );
    const pinged = await command(clients, 'ping', 'pinged');
    const replies = pinged.reduce((a, l) => a + (l.replies as number), 0);
    const pingS = Math.max(...pinged.map((l) => l.seconds as number));
    await sleep(1000);
    const pTraffic = await probe(gw);
    console.log(`traffic: ${replies} / ${ok} sessions got their ICMP echo reply through the gateway TUN within ${pingS.toFixed(2)} s [${replies === ok && ok === SESSIONS ? 'PASS' : 'MISS'}]; gateway RSS after forced GC now ${MiB(pTraffic.rss)} MiB (${KiB((pTraffic.rss - p1.rss) / ok)} KiB per session more than idle)`);
    const closed = await command(clients, 'close', 'closed');
    await sleep(2000);
    const pEnd = await probe(gw);
    console.log(
      `teardown: ${ok} sessions closed in ${Math.max(...closed.map((l) => l.seconds as number)).toFixed(2)} s; gateway after forced GC: RSS ${MiB(pEnd.rss)} MiB, V8 heap used ${MiB(pEnd.heapUsed)} MiB (${MiB(p0.heapUsed)} before the first session), external ${MiB(pEnd.external)} MiB`,
    );
  } finally {
    await topo.destroy();
    files.cleanup();
  }
}

/**
 * What Node itself costs per idle session, for comparison: a bare node:http2 server over TLS (bench/lib/
 * h2-floor-server.mjs, same settings as the library's server) holding SESSIONS sessions with one CONNECT
 * stream each, opened from this process over loopback; slope of its RSS after a forced GC, as for the gateway.
 */
async function floor(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'qgb-floor-'));
  const sessions: http2.ClientHttp2Session[] = [];
  const child = spawn(process.execPath, ['--expose-gc', '--import', PROBE, H2_FLOOR_SERVER, join(dir, 'cert.pem'), join(dir, 'key.pem')], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const certs = await ensureCertificates(join(dir, 'data'), { names: [] });
    writeFileSync(join(dir, 'cert.pem'), certs.certPem);
    writeFileSync(join(dir, 'key.pem'), certs.keyPem);
    const lines: Record<string, unknown>[] = [];
    const waiters: (() => void)[] = [];
    const onLine = (l: string): void => {
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        return;
      }
      for (const w of waiters.splice(0)) w();
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    const next = async (msg: string, from: number): Promise<Record<string, unknown>> => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const hit = lines.slice(from).find((l) => l.msg === msg);
        if (hit) return hit;
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`h2 floor server: no ${msg}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 500);
        });
      }
    };
    const port = (await next('listening', 0)).port as number;
    const probeFloor = async (): Promise<MemProbe> => {
      const from = lines.length;
      child.kill('SIGUSR2');
      return (await next('memprobe', from)) as unknown as MemProbe;
    };
    const open = (): Promise<void> =>
      new Promise((resolve, reject) => {
        const session = http2.connect(`https://127.0.0.1:${port}`, { ca: certs.caPem });
        sessions.push(session);
        session.once('error', reject);
        session.once('remoteSettings', () => {
          const stream = session.request({ ':method': 'CONNECT', ':protocol': 'webtransport', ':scheme': 'https', ':path': '/floor', ':authority': `127.0.0.1:${port}` });
          stream.once('response', () => resolve());
          stream.once('error', reject);
        });
      });
    const openMany = async (count: number): Promise<void> => {
      let left = count;
      await Promise.all(Array.from({ length: CONC }, async () => {
        while (left > 0) {
          left--;
          await open();
        }
      }));
      await sleep(1000);
    };
    await sleep(500);
    const f0 = await probeFloor();
    const counts: number[] = [];
    const probes: MemProbe[] = [];
    for (let k = 0; k < STEPS; k++) {
      const target = Math.round((SESSIONS * (k + 1)) / STEPS);
      await openMany(target - (counts.at(-1) ?? 0));
      counts.push(target);
      probes.push(await probeFloor());
    }
    console.log(
      `memory.floor: bare node:http2 + TLS server (no WebTransport library, no quicgate), ${SESSIONS} idle sessions with one CONNECT stream each, loopback: slope ${perSessionFit(counts, probes).text}; from 0 ${KiB((probes.at(-1)!.rss - f0.rss) / SESSIONS)} KiB`,
    );
  } finally {
    for (const session of sessions) session.destroy();
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`# ${new Date().toISOString()} node ${process.version}, SESSIONS=${SESSIONS} PROCS=${PROCS} CONC=${CONC}${process.env.GATEWAY_ENV ? ` GATEWAY_ENV=${process.env.GATEWAY_ENV}` : ''}`);
  microRegistry();
  microForward();
  await floor();
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
