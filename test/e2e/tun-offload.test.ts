/**
 * TSO/USO reads from the TUN and super-packets written back or segmented (native/src/gso.cc), against the
 * real kernel. A helper (helpers/tun-tso.ts) in one namespace of ours opens two TUNs, moves one into a second
 * namespace and bridges them; real TCP (IPv4, IPv6) and UDP sent with UDP_SEGMENT (IPv4, IPv6) cross it:
 *   unit   super-packets read from one TUN, written to the other as one unit (writeGso: the HTTP/2 path)
 *   split  segmented natively (gsoSplit) and written through the coalescing TunWriter (the HTTP/3 path)
 *   plain  the far TUN has no offloads: writeGso segments natively and writes real packets
 * Every flow must arrive exactly (TCP: same byte count and SHA-256; UDP: every datagram, intact), the reads
 * must have been super-packets, and the receiving kernel must count no checksum error (in split and plain it
 * verifies every segment's checksum itself).
 *
 * Needs root and /dev/net/tun: without them this FAILS (it does not skip).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireNetnsSupport, Topology } from './helpers/netns.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const helperScript = path.join(root, 'test', 'e2e', 'helpers', 'tun-tso.ts');
let topo: Topology | undefined;

interface Direction {
  superPackets: number;
  superBytes: number;
  plainPackets: number;
  writeErrors: number;
  splitFailures: number;
}

interface TcpFlow {
  sent: number;
  sentSha256: string;
  bytes: number;
  sha256: string;
  superPackets: number;
}

interface UdpFlow {
  expected: number;
  received: number;
  distinct: number;
  wrong: number;
  superPackets: number;
}

interface GsoStats {
  superPackets: number;
  coalescedPackets: number;
  superPacketsRead: number;
  badSuperPacketsRead: number;
  superPacketsWritten: number;
}

interface Result {
  event: string;
  message?: string;
  offloads: { aTso: boolean; aUso: boolean; bTso: boolean };
  gro: { a: GsoStats; b: GsoStats };
  aToB: Direction;
  bToA: Direction;
  flows: { tcp4: TcpFlow; tcp6: TcpFlow; udp4: UdpFlow; udp6: UdpFlow };
  errors: Record<string, number>;
  writeDrops: { a: number; b: number };
}

async function run(mode: 'unit' | 'split' | 'plain'): Promise<Result> {
  if (topo === undefined) throw new Error('no namespaces');
  const child = topo.spawn(topo.server, process.execPath, ['--import', 'tsx', helperScript, JSON.stringify({ mode, peerNs: topo.clients[0] })]);
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const line = out.trim().split('\n').pop() ?? '';
  let result: Result;
  try {
    result = JSON.parse(line) as Result;
  } catch {
    throw new Error(`helper exited ${code} without a result; stdout ${out}; stderr ${err}`);
  }
  if (result.event !== 'result') throw new Error(`helper failed: ${result.message}; stderr ${err}`);
  expect(code).toBe(0);
  return result;
}

function expectExact(r: Result): void {
  for (const flow of [r.flows.tcp4, r.flows.tcp6]) {
    expect({ bytes: flow.bytes, sha256: flow.sha256 }).toEqual({ bytes: flow.sent, sha256: flow.sentSha256 });
    // 6 MiB in 64 KB reads: the TCP stream was read as super-packets (not one by one).
    expect(flow.superPackets).toBeGreaterThan(20);
  }
  for (const flow of [r.flows.udp4, r.flows.udp6]) {
    expect({ received: flow.received, distinct: flow.distinct, wrong: flow.wrong }).toEqual({ received: flow.expected, distinct: flow.expected, wrong: 0 });
    // 40 sends of 16 segments each, every one read as one USO super-packet.
    expect(flow.superPackets).toBe(40);
  }
  for (const [name, value] of Object.entries(r.errors)) expect({ name, value }).toEqual({ name, value: 0 });
  expect(r.aToB.writeErrors + r.bToA.writeErrors + r.aToB.splitFailures).toBe(0);
  expect(r.writeDrops).toEqual({ a: 0, b: 0 });
  expect(r.gro.a.badSuperPacketsRead).toBe(0);
  expect(r.offloads.aTso && r.offloads.aUso).toBe(true);
}

beforeAll(async () => {
  await requireNetnsSupport();
  if (!existsSync('/dev/net/tun')) throw new Error('/dev/net/tun is missing: load the tun module');
  topo = await Topology.create(1);
});

afterAll(async () => {
  if (topo === undefined) return;
  await topo.destroy();
  const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  expect(left).not.toContain(topo.server);
  expect(left).not.toContain(topo.clients[0]!);
});

describe('TSO/USO super-packets against the real kernel', () => {
  it('unit: written to the far TUN as one unit each, delivered exactly', async () => {
    const r = await run('unit');
    expectExact(r);
    expect(r.gro.b.superPacketsWritten).toBe(r.aToB.superPackets);
  }, 120_000);

  it('split: segmented natively, re-coalesced by the far TUN writer, checksums verified by the kernel', async () => {
    const r = await run('split');
    expectExact(r);
    expect(r.gro.b.superPacketsWritten).toBe(0);
    // The segments are valid packets: the writer only coalesces packets whose checksums verify.
    expect(r.gro.b.coalescedPackets).toBeGreaterThan(r.aToB.superPackets);
  }, 120_000);

  it('plain: a far TUN without offloads gets real packets segmented by writeGso, checksums verified by the kernel', async () => {
    const r = await run('plain');
    expect(r.offloads.bTso).toBe(false);
    expectExact(r);
    expect(r.gro.b.superPacketsWritten + r.gro.b.coalescedPackets).toBe(0);
  }, 120_000);
});
