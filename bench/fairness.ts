/**
 * bench/fairness.ts - is a user's limit shared fairly among the user's own flows (issue 13), per transport?
 *
 *   sudo npx tsx bench/fairness.ts              (needs: npm run build, iperf3, ping; root)
 *   LIMITS="3.3 37 230" DUR=6 SHAPINGS="fair fifo" TRANSPORTS="quic h2" sudo -E npx tsx bench/fairness.ts
 *
 * One gateway namespace, three client namespaces: alice on two devices (alice#1, alice#2), bob (BOB_MBIT,
 * 5 Mbit/s) once. Per limit L of alice (users file + SIGHUP), per client transport (TRANSPORTS: quic and h2 by
 * default, h3 optional but not beside quic; the clients are restarted on another transport, the order
 * alternates per limit: quic h2, h2 quic, ...) and per `shaping` (fair, fifo: server file + SIGHUP, applied
 * live), two cases:
 *   mix   TCP up from alice#1, a UDP stream at 0.5 x L up from alice#1, TCP down to alice#2, all at once, with
 *         a ping at 5/s from alice#1 and bob's own TCP upload beside them
 *   tcp8  8 TCP flows down to alice#1 (-P 8), bob's upload beside them
 * With UPLINK_MBIT (e.g. 20), per transport once more, after the limits (alice's last limit above the uplink):
 *   uplink  alice#1's own underlay held to UPLINK_MBIT (tc tbf on its veth, removed after), TCP up and a UDP
 *           stream at 1 x the uplink from alice#1: the client's send side is the bottleneck, not the gateway.
 *           Printed: each flow's IP rate / uplink (goal: TCP >= 0.25) and the client's send-side drops.
 *           A/B: CLIENT_SEND=fifo (bench/lib/bed.ts).
 * Printed (receiver side, after the first 2 s): each flow's IP rate / L (goal >= 0.25), their total with the
 * TCP ACKs (estimated: one 52-byte ACK per two full segments; goal within +-3 %), the ping median vs idle
 * (goal <= +10 ms; p95 shown), each of the 8 flows x 8 (goal 1 +- 0.25), bob's rate / his limit (goal 0.9..1.05);
 * then all cases side by side (a column per transport) and the misses per transport. Each mix line ends with the
 * gateway's drops by reason and the UDP datagrams the kernel dropped for full receive buffers in the gateway's
 * and alice#1's namespaces (the underlay: a QUIC tunnel's congestion control answers those by sending less).
 * Bounded: about 2 x (DUR + 2) s per transport, limit and shaping, plus client restarts.
 */
import { cpus, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TunnelTransport } from '../test/e2e/helpers/quicgate.js';
import { dropDelta, GW4, runBench, Verdicts, type BenchBed } from './lib/bed.js';
import { ackShare, iperfJson, median, output, pingRtts, quantile, receiverIntervals, tcpIpPerPayload, udpRcvbufErrors, type IperfJson } from './lib/measure.js';
import { parseTransports, roundOrder, SideBySide } from './lib/per-transport.js';

const LIMITS = (process.env.LIMITS ?? '3.3 37 230').split(/\s+/).filter(Boolean).map(Number);
const DUR = Number(process.env.DUR ?? 6);
const SHAPINGS = (process.env.SHAPINGS ?? 'fair fifo').split(/\s+/).filter(Boolean) as ('fair' | 'fifo')[];
const TRANSPORTS = parseTransports(process.env.TRANSPORTS, ['quic', 'h2']);
const BOB_MBIT = Number(process.env.BOB_MBIT ?? 5);
const MAX_TIME = Number(process.env.MAX_TIME ?? 900);
/** Seconds of each run left out (TCP slow start, the UDP stream's first burst). */
const SKIP = 2;
/** IP bytes per payload byte of UDP with -l 1200 (TCP: tcpIpPerPayload of the session's MTU). */
const UDP_IP = 1228 / 1200;
/** alice#1's underlay rate for the uplink case (Mbit/s); 0: no uplink case. */
const UPLINK_MBIT = Number(process.env.UPLINK_MBIT ?? 0);

const goals = new Verdicts();
const table = new SideBySide('limit shaping case', TRANSPORTS);
/** The transport the case being measured runs over: its verdicts are counted under it. */
let current = '';
const verdict = (ok: boolean): string => goals.verdict(ok, current);

function iperf(bed: BenchBed, ns: string, port: number, args: readonly string[]): Promise<IperfJson | undefined> {
  return iperfJson(bed.topo, ns, GW4, port, args, DUR);
}

/** Mean receiver rate (bit/s) over the whole seconds after SKIP. */
function steadyRate(j: IperfJson | undefined, reverse: boolean): number {
  const iv = receiverIntervals(j, reverse).slice(SKIP, DUR);
  return iv.length === 0 ? NaN : iv.reduce((a, b) => a + b, 0) / iv.length;
}

/** bob's rate / his limit and its verdict. */
function bobRatio(j: IperfJson | undefined, mtu: number): { text: string; cell: string } {
  const ratio = (steadyRate(j, false) / (BOB_MBIT * 1e6)) * tcpIpPerPayload(mtu);
  const v = verdict(ratio > 0.9 && ratio < 1.05);
  return { text: `bob ${ratio.toFixed(3)} [${v}]`, cell: `bob ${ratio.toFixed(3)} ${v}` };
}

/** A case's row in the side-by-side table: the limit, the shaping and the case. */
function row(limit: number, shaping: string, name: string): string {
  return `${String(limit).padStart(5)} Mbit/s ${shaping} ${name}`;
}

async function mix(bed: BenchBed, transport: string, limit: number, shaping: string, idleMedian: number): Promise<void> {
  const L = limit * 1e6;
  const tcpIp = tcpIpPerPayload(bed.mtu);
  const drops0 = await bed.drops();
  const rcvbuf0 = await Promise.all([udpRcvbufErrors(bed.topo, bed.topo.server), udpRcvbufErrors(bed.topo, bed.nsA1)]);
  const up = iperf(bed, bed.nsA1, 5301, []);
  const udp = iperf(bed, bed.nsA1, 5302, ['-u', '-b', `${0.5 * limit}M`, '-l', '1200']);
  const down = iperf(bed, bed.nsA2, 5303, ['-R']);
  const bob = iperf(bed, bed.nsB, 5304, []);
  await sleep(SKIP * 1000);
  const pings = output(bed.topo, bed.nsA1, 'ping', ['-n', '-i', '0.2', '-c', String(Math.floor((DUR - SKIP - 0.5) / 0.2)), '-W', '2', GW4]);
  const [ju, jd, jp, jb] = await Promise.all([up, udp, down, bob]);
  const shares = [steadyRate(ju, false) * tcpIp, steadyRate(jd, false) * UDP_IP, steadyRate(jp, true) * tcpIp].map((r) => r / L);
  const acks = (shares[0]! + shares[2]!) * ackShare(bed.mtu);
  const total = shares.reduce((a, b) => a + b, 0) + acks;
  const rtts = pingRtts(await pings);
  const med = median(rtts);
  const drops = dropDelta(drops0, await bed.drops());
  const rcvbuf1 = await Promise.all([udpRcvbufErrors(bed.topo, bed.topo.server), udpRcvbufErrors(bed.topo, bed.nsA1)]);
  const vShares = verdict(shares.every((s) => s >= 0.25));
  const vTotal = verdict(Math.abs(total - 1) <= 0.03);
  const vPing = verdict(med - idleMedian <= 10);
  const b = bobRatio(jb, bed.mtu);
  console.log(
    `${transport.padEnd(4)} ${row(limit, shaping, 'mix  ')} tcp_up ${shares[0]!.toFixed(3)} udp ${shares[1]!.toFixed(3)} (sent ${(((jd?.end.sum?.bits_per_second ?? NaN) * UDP_IP) / L).toFixed(3)}) tcp_down ${shares[2]!.toFixed(3)} [${vShares}]` +
      `  total ${total.toFixed(3)} (acks ~${acks.toFixed(3)}) [${vTotal}]` +
      `  ping median ${med.toFixed(1)} (+${(med - idleMedian).toFixed(1)}) p95 ${quantile(rtts, 0.95).toFixed(1)} ms, ${rtts.length} replies [${vPing}]` +
      `  ${b.text}  | gateway drops: ${drops}; UDP receive-buffer drops: gateway ns ${rcvbuf1[0]! - rcvbuf0[0]!}, alice#1 ns ${rcvbuf1[1]! - rcvbuf0[1]!}`,
  );
  table.set(
    row(limit, shaping, 'mix (up/udp/down; total; ping +ms)'),
    transport,
    `${shares.map((x) => x.toFixed(2)).join('/')} ${vShares}; ${total.toFixed(3)} ${vTotal}; +${(med - idleMedian).toFixed(1)} ${vPing}; ${b.cell}`,
  );
}

async function uplink(bed: BenchBed, transport: string, limit: number, shaping: string): Promise<void> {
  const U = UPLINK_MBIT * 1e6;
  const tbf = ['qdisc', 'replace', 'dev', 'qgv0', 'root', 'tbf', 'rate', `${UPLINK_MBIT}mbit`, 'burst', '32kb', 'latency', '50ms'];
  await bed.topo.exec(bed.nsA1, 'tc', tbf);
  try {
    const up = iperf(bed, bed.nsA1, 5301, []);
    const udp = iperf(bed, bed.nsA1, 5302, ['-u', '-b', `${UPLINK_MBIT}M`, '-l', '1200']);
    const [ju, jd] = await Promise.all([up, udp]);
    const tcp = (steadyRate(ju, false) * tcpIpPerPayload(bed.mtu)) / U;
    const u = (steadyRate(jd, false) * UDP_IP) / U;
    const v = verdict(tcp >= 0.25);
    console.log(`${transport.padEnd(4)} ${row(limit, shaping, 'uplink')} ${UPLINK_MBIT} Mbit/s: tcp_up ${tcp.toFixed(3)} [${v}] udp ${u.toFixed(3)} of the uplink`);
    table.set(row(limit, shaping, `uplink ${UPLINK_MBIT} Mbit/s (tcp/udp)`), transport, `${tcp.toFixed(3)} ${v}/${u.toFixed(3)}`);
  } finally {
    await bed.topo.exec(bed.nsA1, 'tc', ['qdisc', 'del', 'dev', 'qgv0', 'root']);
  }
}

async function tcp8(bed: BenchBed, transport: string, limit: number, shaping: string): Promise<void> {
  const L = limit * 1e6;
  const eight = iperf(bed, bed.nsA1, 5301, ['-R', '-P', '8']);
  const bob = iperf(bed, bed.nsB, 5304, []);
  const [j, jb] = await Promise.all([eight, bob]);
  // Per stream: the client is the receiver with -R; whole-run means (the streams start together).
  const streams = (j?.end.streams ?? []).map((s) => ((s.receiver?.bits_per_second ?? NaN) * tcpIpPerPayload(bed.mtu)) / L);
  const sum = streams.reduce((a, b) => a + b, 0);
  const each = streams.map((s) => (s / sum) * 8);
  const v = verdict(streams.length === 8 && each.every((x) => Math.abs(x - 1) <= 0.25));
  const b = bobRatio(jb, bed.mtu);
  console.log(
    `${transport.padEnd(4)} ${row(limit, shaping, 'tcp8 ')} each x8 ${each.map((x) => x.toFixed(2)).join(' ')} [${v}]  total ${(sum * (1 + ackShare(bed.mtu))).toFixed(3)} (whole run, with slow start)  ${b.text}`,
  );
  const range = each.length === 0 ? 'no streams' : `${Math.min(...each).toFixed(2)}-${Math.max(...each).toFixed(2)}`;
  table.set(row(limit, shaping, 'tcp8 (each x8; total)'), transport, `${range} ${v}; ${(sum * (1 + ackShare(bed.mtu))).toFixed(3)}; ${b.cell}`);
}

runBench(
  'fairness.ts',
  {
    maxTimeS: MAX_TIME,
    bobMbit: BOB_MBIT,
    firstAliceMbit: LIMITS[0] ?? 10,
    serverYaml: `shaping: ${SHAPINGS[0] ?? 'fair'}`,
    iperfPorts: [5301, 5302, 5303, 5304],
    transports: TRANSPORTS,
  },
  async (bed) => {
    const t0 = Date.now();
    console.log(
      `# ${new Date().toISOString()} DUR=${DUR}s (first ${SKIP}s left out) bob=${BOB_MBIT} Mbit/s client_send=${process.env.CLIENT_SEND === 'fifo' ? 'fifo' : 'fair'} transports=${TRANSPORTS.join(',')};` +
        ` load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} on ${cpus().length} CPUs, Node ${process.version}`,
    );
    console.log('# goals: mix: every flow >= 0.25 of the limit, total within +-3 %, ping median <= idle + 10 ms; tcp8: each flow x8 within 1 +- 0.25; bob 0.9..1.05');
    const idle = new Map<string, number>();
    const clientsOn = async (transport: TunnelTransport): Promise<void> => {
      if (!(await bed.useTransport(transport))) return;
      const rtt = median(pingRtts((await bed.topo.exec(bed.nsA1, 'ping', ['-n', '-i', '0.2', '-c', '10', GW4])).stdout));
      // The first idle figure of a transport is its baseline for the whole run (a restart does not move it).
      if (!idle.has(transport)) idle.set(transport, rtt);
      console.log(`# clients on ${transport}: tunnel MTU ${bed.mtu}, idle ping alice#1 median ${rtt.toFixed(2)} ms`);
    };
    let round = 0;
    for (const limit of LIMITS) {
      await bed.setAlice(limit);
      await bed.reload();
      for (const transport of roundOrder(TRANSPORTS, round++)) {
        await clientsOn(transport);
        current = transport;
        for (const shaping of SHAPINGS) {
          bed.setServer(`shaping: ${shaping}`);
          await bed.reload();
          await mix(bed, transport, limit, shaping, idle.get(transport)!);
          await tcp8(bed, transport, limit, shaping);
          console.log(`#   load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
        }
      }
    }
    if (UPLINK_MBIT > 0) {
      for (const transport of roundOrder(TRANSPORTS, round)) {
        await clientsOn(transport);
        current = transport;
        await uplink(bed, transport, LIMITS.at(-1)!, SHAPINGS.at(-1)!);
      }
    }
    await bed.stopClients();
    console.log('# side by side:');
    for (const line of table.lines()) console.log(`# ${line}`);
    console.log(goals.summary(t0));
  },
);
