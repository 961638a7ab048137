/**
 * e2e helper for TSO/USO reads and GSO writes/splits (native/src/gso.cc), run inside namespace A:
 *   ip netns exec A node --import tsx tun-tso.ts '{"mode":"unit","peerNs":"B"}'
 *
 * It opens two LinuxTuns in A, moves the second into namespace B (the fd stays ours) and bridges them like a
 * two-ended tunnel: every packet read from one is written to the other. A's TUN reads super-packets (TSO/USO);
 * how they cross depends on `mode`:
 *   unit   writeGso to B's TUN as one unit (what the HTTP/2 path does at the far end)
 *   split  gsoSplit into real packets, staged through a TunWriter (B's TUN re-coalesces them: the HTTP/3 path)
 *   plain  B's TUN has no offloads (no virtio header): writeGso segments natively and writes packet by packet
 * Then real traffic goes from A (198.18.7.1, 2001:db8:7::1) to B (198.18.7.2, 2001:db8:7::2): a TCP stream
 * per family (node:net; the receiver in B hashes what it got) and UDP sent with UDP_SEGMENT (python3, so the
 * kernel builds USO super-packets; the receiver in B checks every datagram). The kernel in B verifies every
 * checksum it is handed (its InCsumErrors counters are reported).
 *
 * Output: one JSON line {"event":"result", ...} (or {"event":"failed","message"}), then the process exits.
 * Nothing is asserted here: the test does.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { GSO_META, superPacketHeaderLength, type TunBatch } from '../../../src/tun/device.js';
import { GsoSplitter } from '../../../src/tun/gso.js';
import { LinuxTun } from '../../../src/tun/linux.js';
import { TunWriter, type TunWriteAccount } from '../../../src/tun/writer.js';

type Mode = 'unit' | 'split' | 'plain';
const args = JSON.parse(process.argv[2] ?? '{}') as { mode: Mode; peerNs: string };
const report = (event: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(event)}\n`);

const MTU = 1400;
const A4 = '198.18.7.1';
const B4 = '198.18.7.2';
const A6 = '2001:db8:7::1';
const B6 = '2001:db8:7::2';
const TCP_BYTES = 6 << 20;
const UDP_SEGMENT = 1000;
const UDP_SENDS = 40;
const UDP_PER_SEND = 16;

function ip(argv: readonly string[]): void {
  const r = spawnSync('ip', argv, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${argv.join(' ')}: ${r.stderr}`);
}

interface Direction {
  superPackets: number;
  superBytes: number;
  plainPackets: number;
  writeErrors: number;
  splitFailures: number;
}

function bridge(from: LinuxTun, to: LinuxTun, mode: Mode, stats: Direction): void {
  const writer = new TunWriter(to);
  const splitter = new GsoSplitter(MTU);
  const account: TunWriteAccount = {
    written() {},
    refused() {
      stats.writeErrors++;
    },
    malformed() {
      stats.writeErrors++;
    },
  };
  from.onBatch((batch: TunBatch) => {
    for (let i = 0; i < batch.count; i++) {
      const offset = i * batch.stride;
      const length = batch.lengths[i]!;
      const kind = batch.meta[i * GSO_META]!;
      if (kind === 0) {
        stats.plainPackets++;
        writer.stage(batch.data, offset, length, account);
        continue;
      }
      stats.superPackets++;
      stats.superBytes += length;
      const gsoSize = batch.meta[i * GSO_META + 1]!;
      if (mode === 'split') {
        const n = splitter.split(batch.data, offset, length, kind, gsoSize);
        if (n <= 0) stats.splitFailures++;
        const seg = splitter.batch;
        for (let s = 0; s < n; s++) writer.stage(seg.data, s * seg.stride, seg.lengths[s]!, account);
      } else {
        const header = superPacketHeaderLength(batch.data, offset, length, kind);
        writer.writeSuper(batch.data, offset, length, kind, gsoSize, header, account);
      }
    }
    writer.flush();
  });
}

function inPeer(script: string, argv: readonly string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', args.peerNs, process.execPath, '-e', script, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function output(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`peer process timed out; stdout ${out} stderr ${err}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`peer process exited ${code}: ${err}`));
    });
  });
}

/** Resolves once the child printed "listening". */
function listening(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const onData = (c: Buffer): void => {
      if (c.toString().includes('listening')) {
        child.stdout!.off('data', onData);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`peer exited ${code} before listening`)));
  });
}

const TCP_SINK = `
const net = require('node:net'); const crypto = require('node:crypto');
const [host, expect] = process.argv.slice(1);
const server = net.createServer((s) => {
  const h = crypto.createHash('sha256'); let n = 0;
  s.on('data', (c) => { h.update(c); n += c.length; });
  s.on('end', () => { console.log(JSON.stringify({ bytes: n, sha256: h.digest('hex') })); s.end(); server.close(); });
});
server.listen(7100, host, () => console.log('listening'));
setTimeout(() => process.exit(3), 60000).unref();
`;

const UDP_SINK = `
const dgram = require('node:dgram');
const [host, family, expect, size] = process.argv.slice(1);
const sock = dgram.createSocket({ type: family === '6' ? 'udp6' : 'udp4', recvBufferSize: 8 << 20 });
let received = 0, wrong = 0; const seen = new Set();
sock.on('message', (m) => {
  received++;
  const index = m.readUInt32BE(0);
  let ok = m.length === Number(size);
  for (let i = 4; ok && i < m.length; i++) if (m[i] !== ((index + i) & 0xff)) ok = false;
  if (!ok) wrong++; seen.add(index);
  if (seen.size === Number(expect)) done();
});
const done = () => { console.log(JSON.stringify({ received, distinct: seen.size, wrong })); process.exit(0); };
sock.bind(7200, host, () => console.log('listening'));
setTimeout(done, 8000).unref();
`;

// python3: the kernel builds USO super-packets only for a socket with UDP_SEGMENT (node:dgram cannot set it).
const UDP_GSO_SENDER = `
import socket, sys
host, family, sends, per, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_UDP, 103, size)  # UDP_SEGMENT
for k in range(sends):
    buf = bytearray()
    for j in range(per):
        index = k * per + j
        d = bytearray(((index + i) & 0xff) for i in range(size))
        d[0:4] = index.to_bytes(4, 'big')
        buf += d
    s.sendto(bytes(buf), (host, 7200))
`;

function pattern(bytes: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  let x = 0x9e3779b9;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

async function tcpFlow(family: 4 | 6): Promise<Record<string, unknown>> {
  const host = family === 4 ? B4 : B6;
  const sink = inPeer(TCP_SINK, [host, String(TCP_BYTES)]);
  const result = output(sink, 60_000);
  await listening(sink);
  const data = pattern(TCP_BYTES);
  await new Promise<void>((resolve, reject) => {
    const socket = connect({ host, port: 7100, localAddress: family === 4 ? A4 : A6 }, () => socket.end(data));
    socket.on('error', reject);
    socket.on('close', () => resolve());
    socket.resume();
  });
  const got = JSON.parse((await result).trim().split('\n').pop()!) as { bytes: number; sha256: string };
  return { sent: TCP_BYTES, sentSha256: createHash('sha256').update(data).digest('hex'), ...got };
}

async function udpFlow(family: 4 | 6): Promise<Record<string, unknown>> {
  const host = family === 4 ? B4 : B6;
  const expected = UDP_SENDS * UDP_PER_SEND;
  const sink = inPeer(UDP_SINK, [host, String(family), String(expected), String(UDP_SEGMENT)]);
  const result = output(sink, 30_000);
  await listening(sink);
  const py = spawnSync('python3', ['-c', UDP_GSO_SENDER, host, String(family), String(UDP_SENDS), String(UDP_PER_SEND), String(UDP_SEGMENT)], { encoding: 'utf8' });
  if (py.status !== 0) throw new Error(`python3 sender: ${py.stderr}`);
  const got = JSON.parse((await result).trim().split('\n').pop()!) as Record<string, number>;
  return { expected, ...got };
}

function csumErrors(): Record<string, number> {
  const read = (file: string): string => spawnSync('ip', ['netns', 'exec', args.peerNs, 'cat', file], { encoding: 'utf8' }).stdout;
  const out: Record<string, number> = {};
  const snmp = read('/proc/net/snmp').split('\n');
  for (let i = 0; i + 1 < snmp.length; i += 2) {
    const names = snmp[i]!.split(/\s+/);
    const values = snmp[i + 1]!.split(/\s+/);
    for (const [j, name] of names.entries()) if (name === 'InCsumErrors') out[`${names[0]!.replace(':', '')}InCsumErrors`] = Number(values[j]);
  }
  for (const line of read('/proc/net/snmp6').split('\n')) {
    const [name, value] = line.trim().split(/\s+/);
    if (name !== undefined && name.endsWith('InCsumErrors')) out[name] = Number(value);
  }
  return out;
}

async function main(): Promise<void> {
  const a = await LinuxTun.open({ name: 'qgtsoa', mtu: MTU, addresses: [{ cidr: `${A4}/24` }, { cidr: `${A6}/64` }], routes: [], offload: true });
  const b = await LinuxTun.open({ name: 'qgtsob', mtu: MTU, addresses: [], routes: [], offload: args.mode !== 'plain' });
  try {
    ip(['link', 'set', 'dev', b.name, 'netns', args.peerNs]);
    ip(['-n', args.peerNs, 'link', 'set', 'dev', b.name, 'mtu', String(MTU), 'txqueuelen', '4096']);
    ip(['-n', args.peerNs, 'addr', 'add', `${B4}/24`, 'dev', b.name]);
    ip(['-n', args.peerNs, '-6', 'addr', 'add', `${B6}/64`, 'dev', b.name, 'nodad']);
    ip(['-n', args.peerNs, 'link', 'set', 'dev', b.name, 'up']);
    const aToB: Direction = { superPackets: 0, superBytes: 0, plainPackets: 0, writeErrors: 0, splitFailures: 0 };
    const bToA: Direction = { superPackets: 0, superBytes: 0, plainPackets: 0, writeErrors: 0, splitFailures: 0 };
    bridge(a, b, args.mode, aToB);
    bridge(b, a, args.mode, bToA);
    const flows: Record<string, Record<string, unknown>> = {};
    const counted = (f: () => Promise<Record<string, unknown>>) => async (): Promise<Record<string, unknown>> => {
      const before = aToB.superPackets;
      const r = await f();
      return { ...r, superPackets: aToB.superPackets - before };
    };
    flows.tcp4 = await counted(() => tcpFlow(4))();
    flows.tcp6 = await counted(() => tcpFlow(6))();
    flows.udp4 = await counted(() => udpFlow(4))();
    flows.udp6 = await counted(() => udpFlow(6))();
    report({
      event: 'result',
      offloads: { aTso: a.superPackets, aUso: a.uso, bTso: b.superPackets },
      gro: { a: a.groStats(), b: b.groStats() },
      aToB,
      bToA,
      flows,
      errors: csumErrors(),
      writeDrops: { a: a.stats.writeDrops, b: b.stats.writeDrops },
    });
  } finally {
    await b.close();
    await a.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    report({ event: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exit(1);
  },
);
