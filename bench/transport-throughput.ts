/**
 * Tunnel transport throughput over the HTTP/2 path on loopback: 1400-byte packets, ~5 s per direction,
 * batches of 64 packets then flush() like the forwarding path. Sender and receiver share this process.
 * `super`: 64,000-byte super-packets instead (what a TSO read hands over; one DATAGRAM capsule each, so the
 * receiver reassembles capsules split across HTTP/2 chunks), batches of 8.
 * Run: npx tsx bench/transport-throughput.ts [seconds] [super]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger } from '../src/log.js';
import { ensureCertificates } from '../src/transport/certs.js';
import type { AcceptedConnection, TunnelConnection } from '../src/transport/types.js';
import { connectTunnel } from '../src/transport/wt-client.js';
import { createTunnelListener } from '../src/transport/wt-server.js';

const superMode = process.argv[3] === 'super';
const PACKET_BYTES = superMode ? 64_000 : 1400;
const BATCH = superMode ? 8 : 64;
/** Super-packets: TCP over IPv4 (framing.ts kind 1), 1,400-byte segments; the bench receiver checks nothing. */
const SUPER_KIND = 1;
const SUPER_GSO = 1400;
const seconds = Number(process.argv[2] ?? 5);
const logger = silentLogger();

async function run(label: string, sender: TunnelConnection, receiver: TunnelConnection): Promise<void> {
  let packets = 0;
  let bytes = 0;
  receiver.setReceiver({
    onPacket(_d, _o, length) {
      packets++;
      bytes += length;
    },
    onSuperPacket(_d, _o, length) {
      packets++;
      bytes += length;
    },
    onBatchEnd() {},
  });
  if (superMode && !sender.carriesSuperPackets) throw new Error(`${label}: the connection does not carry super-packets`);
  const packet = Buffer.alloc(PACKET_BYTES, 0xab);
  const dropsBefore = sender.stats.queueDrops;
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  const end = start + seconds * 1000;
  let offered = 0;
  // Offer a batch, then yield to the event loop (as a TUN read loop would).
  while (performance.now() < end) {
    if (superMode) for (let i = 0; i < BATCH; i++) sender.sendSuperPacket(packet, 0, PACKET_BYTES, SUPER_KIND, SUPER_GSO);
    else for (let i = 0; i < BATCH; i++) sender.sendPacket(packet, 0, PACKET_BYTES);
    offered += BATCH;
    sender.flush();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  // CPU of this process (sender and receiver) per GB received: steadier than the rate on a shared machine.
  const cpuPerGB = (cpu.user + cpu.system) / 1e6 / (bytes / 1e9);
  const rss = process.memoryUsage().rss / 1e6;
  console.log(
    `${label}${superMode ? ' (super-packets)' : ''}: ${(packets / elapsed / 1000).toFixed(1)}k pkt/s, ${((bytes * 8) / elapsed / 1e6).toFixed(0)} Mbit/s received, ${cpuPerGB.toFixed(2)} CPU s/GB; ` +
      `offered ${offered}, queue drops ${sender.stats.queueDrops - dropsBefore}, datagrams ${sender.stats.datagramsSent}, rss ${rss.toFixed(0)} MB`,
  );
}

const dir = await mkdtemp(path.join(tmpdir(), 'qg-bench-'));
try {
  const certs = await ensureCertificates(dir, { names: [] });
  const listener = await createTunnelListener({
    host: '127.0.0.1', port: 0, cert: certs.certPem, key: certs.keyPem, sendQueuePackets: 4096, logger, http3: 'off',
    admission: async (request) => ({ ok: true, user: request.user }),
  });
  const accepted = new Promise<AcceptedConnection>((resolve) => listener.onConnection(resolve));
  const client = await connectTunnel({
    url: `https://127.0.0.1:${listener.port}`, user: 'bench', password: 'x', previousAddresses: [], transport: 'h2',
    caPem: certs.caPem, sendQueuePackets: 4096, logger, connectTimeoutMs: 5000,
  });
  const server = (await accepted).connection;
  // The framing versions are exchanged on the control stream right after the session opens.
  for (let i = 0; superMode && i < 100 && !(client.carriesSuperPackets && server.carriesSuperPackets); i++) await new Promise((r) => setTimeout(r, 20));
  await run('client->server', client, server);
  await run('server->client', server, client);
  client.close({ reason: 'client_closed' });
  await server.closed;
  await listener.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
