/**
 * TUN throughput bench (root): `npx tsx bench/tun-read.ts [seconds]`.
 *
 * Flow: outer process makes namespace qgt-bench-<pid> -> re-runs this file inside it (--inner) -> inner opens
 * LinuxTun 198.18.0.1/24 and starts a sender child (node dgram, 1400-byte IPv4/UDP to 198.18.0.9, routed into
 * the TUN) -> counts packets/s and batch sizes read into JS; the sender (~250k pkt/s here) is slower than the
 * reader, so after 1 s the bench blocks its event loop for 400 ms and times how fast the queued backlog (big
 * txqueuelen) drains in full batches: that is the reader's capacity -> then times write() and writeBatch() of
 * 1400-byte UDP packets into the TUN -> prints JSON. The namespace is removed in all cases.
 * (iperf3 -u cannot be the sender: its client needs a server for the control connection.)
 */
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createTunBatch } from '../src/tun/device.js';
import { LinuxTun } from '../src/tun/linux.js';

const seconds = Number(process.argv.find((a) => /^\d+(\.\d+)?$/.test(a)) ?? '5');
const PACKET_BYTES = 1400;

const SENDER = `
import dgram from 'node:dgram';
const socket = dgram.createSocket('udp4');
const payload = Buffer.alloc(${PACKET_BYTES - 28}, 7);
let sent = 0;
const until = Date.now() + ${Math.round(seconds * 1000)};
socket.connect(9, '198.18.0.9', () => {
  const burst = () => {
    for (let i = 0; i < 256; i++) { socket.send(payload); sent++; }
    if (Date.now() < until) setImmediate(burst);
    else socket.close(() => { process.stdout.write(String(sent)); });
  };
  burst();
});
`;

function txDropped(device: string): number {
  const [link] = JSON.parse(execFileSync('ip', ['-s', '-j', 'link', 'show', 'dev', device], { encoding: 'utf8' })) as {
    stats64?: { tx?: { dropped?: number } };
  }[];
  return link?.stats64?.tx?.dropped ?? 0;
}

/** Valid IPv4/UDP packet 198.18.0.9:9 -> 198.18.0.1:9 (no listener: the kernel drops it after routing). */
function udpPacket(length: number): Buffer {
  const p = Buffer.alloc(length, 7);
  p.writeUInt16BE(0x4500, 0);
  p.writeUInt16BE(length, 2);
  p.writeUInt32BE(0x40004011, 6); // DF, TTL 64, UDP
  p.writeUInt16BE(0, 10);
  Buffer.from([198, 18, 0, 9, 198, 18, 0, 1]).copy(p, 12);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  p.writeUInt16BE(~sum & 0xffff, 10);
  p.writeUInt32BE(0x00090009, 20);
  p.writeUInt16BE(length - 20, 24);
  p.writeUInt16BE(0, 26); // UDP checksum 0 = none (IPv4)
  return p;
}

async function inner(): Promise<void> {
  const tun = await LinuxTun.open({
    name: 'qgtb%d',
    mtu: 1500,
    addresses: [{ cidr: '198.18.0.1/24' }],
    routes: [],
    txQueueLen: 200_000,
  });
  const histogram = new Map<number, number>();
  let packets = 0;
  let firstAt = 0;
  let lastAt = 0;
  const drain = { active: false, startAt: 0, endAt: 0, packets: 0 };
  tun.onBatch((batch) => {
    lastAt = performance.now();
    if (packets === 0) firstAt = lastAt;
    packets += batch.count;
    histogram.set(batch.count, (histogram.get(batch.count) ?? 0) + 1);
    if (drain.active) {
      drain.packets += batch.count;
      if (batch.count < batch.lengths.length) {
        drain.active = false;
        drain.endAt = lastAt;
      }
    }
  });
  setTimeout(() => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400); // block the loop: the kernel queues
    drain.active = true;
    drain.startAt = performance.now();
  }, 1000);

  const cpuBefore = process.cpuUsage();
  const sender = spawn(process.execPath, ['--input-type=module', '-e', SENDER], { stdio: ['ignore', 'pipe', 'inherit'] });
  let sentText = '';
  sender.stdout.on('data', (chunk: Buffer) => (sentText += chunk.toString()));
  await new Promise((resolve) => sender.on('exit', resolve));
  await new Promise((resolve) => setTimeout(resolve, 200)); // drain what is still queued
  const cpu = process.cpuUsage(cpuBefore);
  const readSeconds = (lastAt - firstAt) / 1000;
  const batches = [...histogram.values()].reduce((a, b) => a + b, 0);
  const read = {
    sent: Number(sentText),
    read: packets,
    readPerSecond: Math.round(packets / readSeconds),
    txDroppedByKernel: txDropped(tun.name),
    batches,
    meanBatch: Number((packets / batches).toFixed(1)),
    fullBatches: histogram.get(64) ?? 0,
    readerCpuMicrosPerPacket: Number(((cpu.user + cpu.system) / packets).toFixed(2)),
    backlogDrained: drain.packets,
    backlogDrainPerSecond: Math.round(drain.packets / ((drain.endAt - drain.startAt) / 1000)),
  };

  const packet = udpPacket(PACKET_BYTES);
  const writeCount = 300_000;
  let start = performance.now();
  let accepted = 0;
  for (let i = 0; i < writeCount; i++) if (tun.write(packet, 0, packet.length)) accepted++;
  const singleSeconds = (performance.now() - start) / 1000;

  const batch = createTunBatch(1500, 64);
  for (let i = 0; i < 64; i++) {
    packet.copy(batch.data, i * batch.stride);
    batch.lengths[i] = packet.length;
  }
  batch.count = 64;
  start = performance.now();
  let acceptedBatched = 0;
  for (let i = 0; i < writeCount / 64; i++) acceptedBatched += tun.writeBatch(batch);
  const batchSeconds = (performance.now() - start) / 1000;

  await tun.close();
  console.log(
    JSON.stringify(
      {
        packetBytes: PACKET_BYTES,
        read,
        batchSizes: Object.fromEntries([...histogram.entries()].sort((a, b) => a[0] - b[0])),
        write: {
          singlePerSecond: Math.round(accepted / singleSeconds),
          singleRefused: writeCount - accepted,
          batch64PerSecond: Math.round(acceptedBatched / batchSeconds),
        },
      },
      null,
      2,
    ),
  );
}

function outer(): void {
  if (process.getuid?.() !== 0) throw new Error('run as root: the bench creates a network namespace and a TUN');
  const ns = `qgt-bench-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const self = fileURLToPath(import.meta.url);
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', self, '--inner', String(seconds)], {
      stdio: 'inherit',
    });
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

if (process.argv.includes('--inner')) await inner();
else outer();
