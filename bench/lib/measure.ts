/**
 * Measuring inside the benches' namespaces: iperf3 (JSON) and ping run as children of a Topology, and the
 * small statistics the benches print. Shared by bench/limits.ts and bench/fairness.ts.
 */
import type { Topology } from '../../test/e2e/helpers/netns.js';

export interface IperfInterval {
  sum: { bits_per_second: number; seconds: number };
}
export interface IperfStream {
  receiver?: { bits_per_second: number };
}
export interface IperfJson {
  end: { sum_received?: { bits_per_second: number }; sum?: { bits_per_second: number; lost_percent?: number }; streams?: IperfStream[] };
  server_output_json?: {
    intervals: IperfInterval[];
    end: { sum?: { bits_per_second: number; lost_percent?: number }; sum_received?: { bits_per_second: number }; streams?: IperfStream[] };
  };
  intervals: IperfInterval[];
}

/**
 * Runs `cmd` in `ns` (a child of the topology: killed with it) and resolves with its stdout once it ended,
 * whatever its exit status (a failed iperf3 or a ping with losses still reports what it measured).
 */
export function output(topo: Topology, ns: string, cmd: string, args: readonly string[]): Promise<string> {
  const child = topo.spawn(ns, cmd, args);
  let text = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  child.stderr!.resume();
  return new Promise((resolve) => {
    child.once('close', () => resolve(text));
    child.once('error', () => resolve(text));
  });
}

/** iperf3 client to `host`:`port` for `seconds`, with the server's report; undefined when it printed no JSON. */
export function iperfJson(topo: Topology, ns: string, host: string, port: number, args: readonly string[], seconds: number): Promise<IperfJson | undefined> {
  return output(topo, ns, 'iperf3', ['-c', host, '-p', String(port), '-t', String(seconds), '-J', '--get-server-output', ...args]).then((text) => {
    try {
      return JSON.parse(text) as IperfJson;
    } catch {
      return undefined;
    }
  });
}

/**
 * The namespace's UDP datagrams the kernel dropped for a full socket receive buffer (/proc/net/snmp `Udp:`
 * RcvbufErrors, counted per network namespace); NaN when it cannot be read. For a QUIC tunnel these are losses
 * its congestion control answers by sending less.
 */
export async function udpRcvbufErrors(topo: Topology, ns: string): Promise<number> {
  const lines = (await output(topo, ns, 'cat', ['/proc/net/snmp'])).split('\n').filter((l) => l.startsWith('Udp: '));
  if (lines.length < 2) return NaN;
  const at = lines[0]!.split(/\s+/).indexOf('RcvbufErrors');
  const value = Number(lines[1]!.split(/\s+/)[at]);
  return at < 0 || !Number.isFinite(value) ? NaN : value;
}

/** Receiver-side per-second rates (bit/s): the server's intervals for uploads, the client's for -R. */
export function receiverIntervals(j: IperfJson | undefined, reverse: boolean): number[] {
  if (j === undefined) return [];
  const iv = reverse ? j.intervals : (j.server_output_json?.intervals ?? []);
  return iv.map((i) => i.sum.bits_per_second);
}

/** Receiver-side rate (bit/s) over the whole run. */
export function receiverRate(j: IperfJson | undefined, reverse: boolean, udp: boolean): number {
  if (j === undefined) return NaN;
  if (udp) {
    // Receiver side of an upload flood: the server's intervals (its end summary has no received sum).
    const iv = j.server_output_json?.intervals ?? [];
    const secs = iv.reduce((a, i) => a + i.sum.seconds, 0);
    return secs > 0 ? iv.reduce((a, i) => a + i.sum.bits_per_second * i.sum.seconds, 0) / secs : NaN;
  }
  return reverse ? (j.end.sum_received?.bits_per_second ?? NaN) : (j.server_output_json?.end.sum_received?.bits_per_second ?? j.end.sum_received?.bits_per_second ?? NaN);
}

/** Median of the finite values (NaN when none). */
export function median(values: readonly number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export function quantile(values: readonly number[], q: number): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v[Math.min(v.length - 1, Math.floor(q * v.length))]!;
}

/** RTTs (ms) from ping output. */
export function pingRtts(text: string): number[] {
  return [...text.matchAll(/time=([0-9.]+) ms/g)].map((m) => Number(m[1]));
}

/** IPv4 + TCP headers with timestamps (20 + 20 + 12): what a full-size TCP segment carries besides payload. */
const TCP_HEADERS = 52;

/**
 * IP bytes per iperf3 payload byte of a bulk TCP flow over a tunnel of `mtu` (full-size segments): what the
 * bucket counts (IP bytes) against what iperf3 reports (payload).
 */
export function tcpIpPerPayload(mtu: number): number {
  return mtu / (mtu - TCP_HEADERS);
}

/** The reverse direction's ACKs of a bulk TCP flow per IP byte of its data: one 52-byte ACK per two segments. */
export function ackShare(mtu: number): number {
  return TCP_HEADERS / (2 * mtu);
}
