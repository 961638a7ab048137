/**
 * bench/flood.ts - what a flood from one host costs the gateway and an authenticated user (issue 12, §1).
 *
 *   npm run build && sudo npx tsx bench/flood.ts
 *   ROUNDS=5 IDLE=1500 PASSWORDS=2000 GARBAGE=200 SECONDS=10 sudo -E npx tsx bench/flood.ts
 *   PARTS=memory TRIM=each sudo -E npx tsx bench/flood.ts     (only the memory part; TRIM=each|last|none)
 *
 * Setup: a real gateway (default connection bounds: handshake_timeout 5s, max_pending 1024,
 * max_pending_per_source 32; auth_attempts 10/min) started with --expose-gc and bench/lib/mem-probe.mjs; the
 * real client in one namespace; the flooding host (test/e2e/helpers/flood-client.mjs: real TLS / HTTP/2
 * clients) in another, sharing the machine's cores with both, as in the issue's setup.
 *
 * Parts and what they print:
 *   traffic   the user's iperf3 rate and ping median through the tunnel alone, then while the host floods
 *             (IDLE idle TLS connections held, PASSWORDS wrong passwords on their own connections, GARBAGE
 *             connections sending garbage after TLS, repeated for the whole measurement): the ratio and the
 *             ping difference, with the goals ≥ 0.8 and ≤ +10 ms
 *   cpu       gateway CPU time (utime+stime from /proc) per refused password attempt, per garbage connection,
 *             per idle connection (held to the deadline or reset at accept) and per held connection (32 from
 *             one source, all held to the deadline), each flood on its own from a fresh source
 *   memory    ROUNDS floods in a row (no traffic); after each, 2 s later: raw RSS, then a forced GC (SIGUSR2 to
 *             the probe) and RSS (anon / file-backed, /proc/self/smaps_rollup), V8 heap used / total, external,
 *             arrayBuffers, glibc malloc in use / free-but-kept / arenas (mallinfo2), and with TRIM=each (the
 *             default) RSS after malloc_trim(0) (then the next flood starts from a trimmed allocator; TRIM=last
 *             trims only after the last flood, TRIM=none never). Goal: after the fifth, RSS within +16 MiB of the
 *             first. GATEWAY_ENV='{"MALLOC_ARENA_MAX":"2"}' passes environment variables to the gateway
 *
 * TRIM_AFTER_FREED=null turns the gateway's own trimmer off (config memory.trim_after_freed, default 16 MiB);
 * SETTLE=ms (default 2000) is the wait after each flood before the figures are read (the trimmer samples every 5 s).
 * PARTS=traffic,cpu,memory (the default: all) chooses the parts. SOURCES=n (default 1): the memory part's idle
 * connections come from n source addresses (192.0.2.100 …, added to the flooding namespace), so up to
 * min(max_pending, 32 n) are held with TLS and HTTP/2 to the deadline instead of 32: the issue's "1,500 held-open
 * TLS connections" against the max_pending bound (1024).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeStaleNamespaces, Topology } from '../test/e2e/helpers/netns.js';
import { adminRequest, metricSamples } from '../test/e2e/helpers/hostile-ops.js';
import { GatewayFiles, iperf, startClient, startGateway, type QuicgateProcess } from '../test/e2e/helpers/quicgate.js';

const ROOT = join(import.meta.dirname, '..');
const PROBE = join(ROOT, 'bench/lib/mem-probe.mjs');
const FLOOD = join(ROOT, 'test/e2e/helpers/flood-client.mjs');
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const IDLE = Number(process.env.IDLE ?? 1500);
const PASSWORDS = Number(process.env.PASSWORDS ?? 2000);
const GARBAGE = Number(process.env.GARBAGE ?? 200);
const SECONDS = Number(process.env.SECONDS ?? 10);
const PARTS = new Set((process.env.PARTS ?? 'traffic,cpu,memory').split(','));
const TRIM = process.env.TRIM ?? 'each';
const SOURCES = Number(process.env.SOURCES ?? 1);
const SETTLE = Number(process.env.SETTLE ?? 2000);
const GATEWAY_ENV = JSON.parse(process.env.GATEWAY_ENV ?? '{}') as Record<string, string>;
const GW4 = '198.18.0.1';
const ADMIN_TOKEN = 'bench-flood-admin-token-0123456789';
const SERVER_YAML = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/16 }
  ipv6: { network: "2001:db8:1::/64" }
keepalive_interval: 2s
history: { enabled: false }
log_level: info
memory: { trim_after_freed: ${process.env.TRIM_AFTER_FREED ?? '16 MiB'} }
admin: { listen: 127.0.0.1, port: 9090, token: ${ADMIN_TOKEN} }
`;

interface MallocFigures {
  readonly inUse: number;
  readonly free: number;
  readonly arenas: number;
}

/** One line of bench/lib/mem-probe.mjs (bytes). */
interface MemProbe {
  readonly rss: number;
  readonly rssAnon: number;
  readonly rssFile: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly heapPhysical: number;
  readonly external: number;
  readonly arrayBuffers: number;
  readonly malloc: MallocFigures | null;
  readonly mallocStatsMs: number;
  readonly trimmed?: { readonly rss: number; readonly rssAnon: number; readonly ms: number; readonly malloc: MallocFigures | null };
}

const MiB = 1024 * 1024;

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssBytes(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/flood.ts needs root (namespaces, TUN)');
  await removeStaleNamespaces();
  // c1 floods during the traffic part and the memory part, c3..c6 are fresh sources for the cpu part.
  const topo = await Topology.create(6);
  const files = new GatewayFiles();
  let gateway: QuicgateProcess | null = null;
  try {
    await files.writeUsers([{ name: 'good', password: 'good-pw', bandwidth: 'unlimited' }]);
    files.writeServer(SERVER_YAML);
    if (!['each', 'last', 'none'].includes(TRIM)) throw new Error(`TRIM=${TRIM}: each, last or none`);
    // Probe 1 is before the first flood, probe ROUNDS + 1 after the last.
    const trimFrom = { each: 1, last: ROUNDS + 1, none: 0 }[TRIM as 'each' | 'last' | 'none'];
    const gw = startGateway(topo, files, { nodeArgs: ['--expose-gc', '--import', PROBE], env: { ...GATEWAY_ENV, MEMPROBE_TRIM_FROM: String(trimFrom) } });
    gateway = gw;
    await gw.waitForMsg('gateway up');
    const good = startClient(topo, topo.clients[1]!, files.clientConfig('good', 'good', 'good-pw'), 'good');
    await good.waitForMsg('tunnel up');

    const flood = async (options: Record<string, unknown>, ns = topo.clients[0]!): Promise<Record<string, Record<string, unknown>>> => {
      if (!gw.running) throw new Error(`the gateway exited; its last output:\n${gw.stderrText.slice(-30).join('\n')}`);
      const args = JSON.stringify({ host: '192.0.2.1', port: 4433, caFile: files.caFile, ...options });
      const { stdout } = await topo.exec(ns, process.execPath, [FLOOD, args], 600_000);
      return Object.fromEntries(stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).map((e) => [String(e.event), e]));
    };
    const probe = async (): Promise<MemProbe> => {
      const from = gw.lines.length;
      gw.signal('SIGUSR2');
      return (await gw.waitForMsg('memprobe', 60_000, from)) as unknown as MemProbe;
    };
    const measure = async (port: number): Promise<{ bps: number; pingMs: number; lost: number }> => {
      const [tcp, ping] = await Promise.all([
        iperf(topo, topo.server, topo.clients[1]!, GW4, port, ['-t', String(SECONDS)]),
        topo.exec(topo.clients[1]!, 'ping', ['-c', String(SECONDS * 5), '-i', '0.2', '-W', '2', GW4], (SECONDS + 30) * 1000),
      ]);
      const times = [...ping.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
      return { bps: tcp.receivedBps, pingMs: median(times), lost: SECONDS * 5 - times.length };
    };

    // ---- traffic: alone, then under the flood (repeated until the measurement is over) ----
    if (PARTS.has('traffic')) {
      await measure(5300); // warm-up
      const alone = await measure(5301);
      const cpu0 = cpuSeconds(gw.pid);
      const flooding = flood({ idle: IDLE, passwords: PASSWORDS, garbage: GARBAGE, holdMs: 20_000, repeatForMs: (SECONDS + 1) * 1000 });
      await sleep(500);
      const during = await measure(5302);
      const floodResult = await flooding;
      const cpuFlood = cpuSeconds(gw.pid) - cpu0;
      const ratio = during.bps / alone.bps;
      const pingDelta = during.pingMs - alone.pingMs;
      console.log(`traffic.alone        ${(alone.bps / 1e6).toFixed(1)} Mbit/s, ping median ${alone.pingMs.toFixed(2)} ms (${alone.lost} lost)`);
      console.log(`traffic.flood        ${(during.bps / 1e6).toFixed(1)} Mbit/s, ping median ${during.pingMs.toFixed(2)} ms (${during.lost} lost); ${String(floodResult.done?.rounds)} flood rounds; gateway CPU ${cpuFlood.toFixed(2)} s`);
      console.log(`traffic.last-round   ${JSON.stringify({ idle: floodResult.idle, passwords: floodResult.passwords, garbage: floodResult.garbage })}`);
      console.log(`traffic.ratio        ${ratio.toFixed(2)} (goal >= 0.80: ${ratio >= 0.8 ? 'met' : 'NOT met'})`);
      console.log(`traffic.ping-delta   ${pingDelta >= 0 ? '+' : ''}${pingDelta.toFixed(2)} ms (goal <= +10 ms: ${pingDelta <= 10 ? 'met' : 'NOT met'})`);
      await sleep(6000); // the flood's held connections reach their deadline
    }

    // ---- cpu: each kind of flood on its own, no traffic ----
    if (PARTS.has('cpu')) {
      const cpuOf = async (label: string, options: Record<string, unknown>, count: number, ns: string): Promise<void> => {
        await sleep(1000);
        const before = cpuSeconds(gw.pid);
        const result = await flood(options, ns);
        await sleep(1000);
        const spent = cpuSeconds(gw.pid) - before;
        const detail = Object.values(result).filter((e) => e.event !== 'done').map((e) => JSON.stringify(e)).join(' ');
        console.log(`cpu.${label.padEnd(16)} ${((spent / count) * 1e6).toFixed(0)} µs per connection (${spent.toFixed(2)} s for ${count}) ${detail}`);
      };
      // Each from a fresh source: the password flood starts with a full budget (10 reach scrypt, then 429 until
      // refused as often as the budget, then resets at accept); garbage and idle are not throttled by it.
      await cpuOf('password', { passwords: PASSWORDS }, PASSWORDS, topo.clients[2]!);
      await cpuOf('garbage', { garbage: GARBAGE }, GARBAGE, topo.clients[3]!);
      await cpuOf('idle', { idle: IDLE, holdMs: 20_000 }, IDLE, topo.clients[4]!);
      // As many as one source may hold (max_pending_per_source): each gets TLS and HTTP/2 and is held to the deadline.
      await cpuOf('held', { idle: 32, holdMs: 20_000 }, 32, topo.clients[5]!);
    }

    // ---- memory: ROUNDS floods in a row ----
    if (PARTS.has('memory')) {
      const localAddresses = SOURCES > 1 ? Array.from({ length: SOURCES }, (_, i) => `192.0.2.${100 + i}`) : undefined;
      for (const address of localAddresses ?? []) await topo.exec(topo.clients[0]!, 'ip', ['addr', 'add', `${address}/24`, 'dev', 'qgv0']);
      const before = await probe();
      console.log(`memory.before        ${breakdown(rssBytes(gw.pid), before)}`);
      const rounds: { raw: number; probe: MemProbe }[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const result = await flood({ idle: IDLE, passwords: PASSWORDS, garbage: GARBAGE, holdMs: 20_000, localAddresses });
        console.log(`memory.flood-${round + 1}.idle  ${JSON.stringify(result.idle)}`);
        await sleep(SETTLE);
        if (!gw.running) throw new Error(`the gateway exited; its last output:\n${gw.stderrText.slice(-30).join('\n')}`);
        const raw = rssBytes(gw.pid);
        // The gateway's own gauges, before the probe's forced GC: what an operator's scrape sees.
        const scraped = String((await adminRequest(topo, ADMIN_TOKEN, 'GET', '/metrics')).body);
        const gauge = (name: string): string => ((metricSamples(scraped, name).get('') ?? NaN) / MiB).toFixed(1);
        rounds.push({ raw, probe: await probe() });
        console.log(
          `memory.flood-${round + 1}       scrape: malloc in use ${gauge('quicgate_process_malloc_inuse_bytes')}, retained ${gauge('quicgate_process_malloc_retained_bytes')}, ` +
            `heap used ${gauge('nodejs_heap_size_used_bytes')}; ${breakdown(raw, rounds.at(-1)!.probe)}`,
        );
      }
      const first = rounds[0]!;
      const last = rounds.at(-1)!;
      const growth = (last.raw - first.raw) / MiB;
      const d = (a: number | undefined, b: number | undefined): string => signed(((a ?? NaN) - (b ?? NaN)) / MiB);
      const trims = gw.lines.filter((l) => l.msg === 'freed memory the allocator kept given back to the system (malloc_trim)');
      console.log(`memory.gateway-trims ${trims.length}: ${trims.map((l) => `${((l.releasedBytes as number) / MiB).toFixed(1)} MiB in ${String(l.ms)} ms`).join(', ')}`);
      console.log(
        `memory.growth        RSS ${signed(growth)} MiB from flood 1 to flood ${ROUNDS} (goal <= +16 MiB: ${growth <= 16 ? 'met' : 'NOT met'}); ` +
          `after GC: RSS ${d(last.probe.rss, first.probe.rss)}, heap used ${d(last.probe.heapUsed, first.probe.heapUsed)}, ` +
          `external ${d(last.probe.external, first.probe.external)}, malloc in use ${d(last.probe.malloc?.inUse, first.probe.malloc?.inUse)}, ` +
          `malloc free ${d(last.probe.malloc?.free, first.probe.malloc?.free)} MiB`,
      );
    }
    printErrors(gw);
  } catch (err) {
    if (gateway !== null && !gateway.running) console.error(`the gateway exited (${JSON.stringify(await gateway.exited)}); its last output:\n${gateway.stderrText.slice(-30).join('\n')}`);
    throw err;
  } finally {
    await topo.destroy();
    files.cleanup();
  }
}

function signed(mib: number): string {
  return `${mib >= 0 ? '+' : ''}${mib.toFixed(1)}`;
}

/** One probe as a line: raw RSS, then after GC the parts, then after malloc_trim when the probe trimmed. */
function breakdown(raw: number, p: MemProbe): string {
  const m = (bytes: number | undefined): string => ((bytes ?? NaN) / MiB).toFixed(1);
  // What anonymous memory neither V8's resident heap nor the allocator's chunks (in use + free) account for:
  // thread stacks, V8's code and metadata pages, free allocator memory already given back (then negative).
  const other = p.malloc === null ? '' : `, other anon ${m(p.rssAnon - p.heapPhysical - p.malloc.inUse - p.malloc.free)}`;
  const malloc = p.malloc === null ? 'malloc n/a' : `malloc in use ${m(p.malloc.inUse)}, free ${m(p.malloc.free)} (${p.malloc.arenas} arenas; read in ${p.mallocStatsMs.toFixed(2)} ms)${other}`;
  const trimmed = p.trimmed === undefined ? '' : `; after malloc_trim (${p.trimmed.ms.toFixed(1)} ms) RSS ${m(p.trimmed.rss)} (anon ${m(p.trimmed.rssAnon)})`;
  return (
    `RSS ${m(raw)} MiB; after GC RSS ${m(p.rss)} (anon ${m(p.rssAnon)}, file ${m(p.rssFile)}), heap used ${m(p.heapUsed)} of ${m(p.heapTotal)} (resident ${m(p.heapPhysical)}), ` +
    `external ${m(p.external)} (arrayBuffers ${m(p.arrayBuffers)}), ${malloc}${trimmed}`
  );
}

function printErrors(gw: QuicgateProcess): void {
  const errors = gw.lines.filter((l) => l.level >= 50);
  console.log(`gateway.errors       ${errors.length}${errors.length > 0 ? ` ${JSON.stringify(errors.slice(0, 3))}` : ''}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
