/**
 * bench/limits.ts - do per-user bandwidth limits hold, and what do they cost in latency, per client transport?
 *
 *   sudo npx tsx bench/limits.ts                 (needs: npm run build, iperf3, ping; root)
 *   LIMITS="1 10 100" DUR=5 SHAPING_DELAY_MS=50 SHAPING=fair TRANSPORTS="quic h2" sudo -E npx tsx bench/limits.ts   (SHAPING=fifo: A/B)
 *
 * One gateway namespace, three client namespaces: alice (limited) twice, bob (limited to BOB_MBIT, 5 Mbit/s)
 * once. Per limit L (Mbit/s, set for alice by editing the users file + SIGHUP) and per client transport
 * (TRANSPORTS: quic and h2 by default, h3 optional but not beside quic; the clients are restarted on another
 * transport, and the order alternates per limit: quic h2, h2 quic, ...):
 *   tcp1      one TCP flow alice#1 -> gateway
 *   tcp1_down one TCP flow gateway -> alice#1 (-R)
 *   tcp4      four TCP flows on two connections of alice (2 + 2 streams, at the same time)
 *   udp2x     a UDP flood at 2 x L from alice#1
 * For each: achieved / configured rate (receiver side, whole run), the worst 1 s window after the first
 * (receiver-side iperf3 intervals, summed over alice's flows: goal <= +5 %), alice's ping RTT during the load
 * (median / p95 / max; goal: at most shaping delay + 5 ms), and during tcp4 and udp2x bob's ping and bob's own
 * TCP rate / his limit (goal: unaffected, ~1.0).
 * Prints one line per case and transport with a PASS/MISS per goal, then all cases side by side (a column per
 * transport) and the misses per transport. Bounded: about (4 cases x DUR + 4 s) per limit and transport.
 */
import { cpus, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { GW4, runBench, Verdicts, type BenchBed } from './lib/bed.js';
import { iperfJson, median, output, pingRtts, quantile, receiverIntervals, receiverRate, tcpIpPerPayload, type IperfJson } from './lib/measure.js';
import { parseTransports, roundOrder, SideBySide } from './lib/per-transport.js';

const LIMITS = (process.env.LIMITS ?? '1 10 100').split(/\s+/).filter(Boolean).map(Number);
const DUR = Number(process.env.DUR ?? 5);
const DELAY_MS = Number(process.env.SHAPING_DELAY_MS ?? 50);
const BOB_MBIT = Number(process.env.BOB_MBIT ?? 5);
const MAX_TIME = Number(process.env.MAX_TIME ?? 600);
/** Config `shaping` (fair | fifo), for A/B runs of the per-flow scheduler against the per-queue one. */
const SHAPING = process.env.SHAPING ?? 'fair';
const TRANSPORTS = parseTransports(process.env.TRANSPORTS, ['quic', 'h2']);
const CASES = ['tcp1', 'tcp1_down', 'tcp4', 'udp2x'] as const;

function iperf(bed: BenchBed, ns: string, port: number, args: string[], seconds = DUR): Promise<IperfJson | undefined> {
  return iperfJson(bed.topo, ns, GW4, port, args, seconds);
}

/** ping's output (RTTs: pingRtts) after about `seconds`. */
function ping(bed: BenchBed, ns: string, seconds: number): Promise<string> {
  const count = Math.max(3, Math.floor((seconds - 1.5) / 0.1));
  return output(bed.topo, ns, 'ping', ['-n', '-i', '0.1', '-c', String(count), '-W', '2', GW4]);
}

function sumSeries(series: number[][]): number[] {
  const n = Math.min(...series.map((s) => s.length));
  return Array.from({ length: Number.isFinite(n) ? n : 0 }, (_, i) => series.reduce((a, s) => a + s[i]!, 0));
}

const goals = new Verdicts();
const table = new SideBySide('limit / case (rate/limit, worst 1 s, ping p95 ms; bob rate/limit)', TRANSPORTS);

async function runCase(bed: BenchBed, transport: string, limit: number, name: (typeof CASES)[number]): Promise<void> {
  const verdict = (ok: boolean): string => goals.verdict(ok, transport);
  const L = limit * 1e6;
  const alice: Promise<IperfJson | undefined>[] = [];
  let reverse = false;
  let udp = false;
  if (name === 'tcp1') alice.push(iperf(bed, bed.nsA1, 5301, []));
  else if (name === 'tcp1_down') {
    reverse = true;
    alice.push(iperf(bed, bed.nsA1, 5301, ['-R']));
  } else if (name === 'tcp4') alice.push(iperf(bed, bed.nsA1, 5301, ['-P', '2']), iperf(bed, bed.nsA2, 5302, ['-P', '2']));
  else {
    udp = true;
    alice.push(iperf(bed, bed.nsA1, 5301, ['-u', '-b', `${2 * limit}M`, '-l', '1200']));
  }
  const withBob = name === 'tcp4' || name === 'udp2x';
  await sleep(700);
  const alicePing = ping(bed, bed.nsA1, DUR - 0.7);
  const bobPing = withBob ? ping(bed, bed.nsB, DUR - 0.7) : undefined;
  const bobIperf = withBob ? iperf(bed, bed.nsB, 5303, [], DUR - 1) : undefined;
  const results = await Promise.all(alice);
  const rate = results.reduce((a, j) => a + receiverRate(j, reverse, udp), 0);
  const windows = sumSeries(results.map((j) => receiverIntervals(j, reverse))).slice(1);
  // The last interval can be a partial second: keep only full ones.
  const full = results[0] === undefined ? [] : (reverse ? results[0].intervals : (results[0].server_output_json?.intervals ?? [])).slice(1).map((i) => i.sum.seconds);
  const winMax = Math.max(...windows.filter((_, i) => (full[i] ?? 1) > 0.9));
  const rtts = pingRtts(await alicePing);
  let bobText = '';
  let bobCell = '';
  if (bobIperf !== undefined && bobPing !== undefined) {
    const bj = await bobIperf;
    const brate = receiverRate(bj, false, false);
    const brtt = pingRtts(await bobPing);
    const ratio = (brate / (BOB_MBIT * 1e6)) * tcpIpPerPayload(bed.mtu);
    const v = verdict(ratio > 0.9 && ratio < 1.05);
    bobText = `  | bob: rate/limit ${ratio.toFixed(3)} [${v}], ping median ${median(brtt).toFixed(2)} ms max ${Math.max(...brtt).toFixed(1)} ms`;
    bobCell = `; bob ${ratio.toFixed(3)} ${v}`;
  }
  // The bucket counts IP bytes (both directions); iperf3 counts payload. IP/payload: TCP over the session's MTU
  // with timestamps (1400/1348 at 1400), UDP -l 1200: 1228/1200. Judged on the IP rate; the payload ratio is shown too.
  const ipScale = udp ? 1228 / 1200 : tcpIpPerPayload(bed.mtu);
  const goodput = rate / L;
  const ratio = goodput * ipScale;
  const worst = (winMax / L) * ipScale;
  const rttMed = median(rtts);
  const rttP95 = quantile(rtts, 0.95);
  // A flood at 2x is expected to be cut to the limit; the goal on the rate is for all cases.
  const vRate = verdict(ratio > 0.95 && ratio < 1.05);
  const vWorst = verdict(worst <= 1.05);
  const vPing = verdict(rttP95 <= DELAY_MS + 5);
  const line =
    `${transport.padEnd(4)} limit ${String(limit).padStart(3)} Mbit/s ${name.padEnd(9)} IP rate/limit ${ratio.toFixed(3)} (payload ${goodput.toFixed(3)}) [${vRate}]` +
    `  worst 1s window ${worst.toFixed(3)} [${vWorst}]` +
    `  ping RTT median ${rttMed.toFixed(1)} p95 ${rttP95.toFixed(1)} max ${Math.max(...rtts).toFixed(1)} ms [${vPing}]` +
    bobText;
  console.log(line);
  table.set(
    `${String(limit).padStart(3)} Mbit/s ${name}`,
    transport,
    `${ratio.toFixed(3)} ${vRate}, ${worst.toFixed(3)} ${vWorst}, ${rttP95.toFixed(1)} ${vPing}${bobCell}`,
  );
}

runBench(
  'limits.ts',
  {
    maxTimeS: MAX_TIME,
    bobMbit: BOB_MBIT,
    firstAliceMbit: LIMITS[0] ?? 10,
    serverYaml: `shaping_delay: ${DELAY_MS}ms\nshaping: ${SHAPING}`,
    iperfPorts: [5301, 5302, 5303],
    transports: TRANSPORTS,
  },
  async (bed) => {
    const t0 = Date.now();
    console.log(
      `# ${new Date().toISOString()} DUR=${DUR}s shaping=${SHAPING} shaping_delay=${DELAY_MS}ms bob=${BOB_MBIT} Mbit/s transports=${TRANSPORTS.join(',')};` +
        ` load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} on ${cpus().length} CPUs, Node ${process.version}`,
    );
    console.log('# goals: IP rate/limit within 0.95..1.05, worst 1 s window (after the first) <= 1.05, ping RTT p95 <= shaping delay + 5 ms, bob rate/limit 0.9..1.05');
    console.log(
      SHAPING === 'fair'
        ? '# note: one bucket and one scheduler per user carry both directions; every flow has its own queue there, a ping (a new flow) goes ahead of the backlogs'
        : '# note: one bucket and one scheduler per user carry both directions; a ping shares its queue with the bulk flow of its direction (up to the shaping delay), the reply goes first in the quiet direction',
    );
    for (const [round, limit] of LIMITS.entries()) {
      await bed.setAlice(limit);
      await bed.reload();
      for (const transport of roundOrder(TRANSPORTS, round)) {
        if (await bed.useTransport(transport)) {
          const idle = pingRtts((await bed.topo.exec(bed.nsA1, 'ping', ['-n', '-i', '0.1', '-c', '10', GW4])).stdout);
          console.log(`# clients on ${transport}: tunnel MTU ${bed.mtu}, idle ping alice#1 median ${median(idle).toFixed(2)} ms`);
        }
        for (const name of CASES) await runCase(bed, transport, limit, name);
        console.log(`#   load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
      }
    }
    await bed.stopClients();
    console.log('# side by side:');
    for (const line of table.lines()) console.log(`# ${line}`);
    console.log(goals.summary(t0));
  },
);
