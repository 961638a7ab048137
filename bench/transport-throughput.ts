/**
 * Tunnel transport throughput over the HTTP/2 path on loopback: 1400-byte packets, ~5 s per direction,
 * batches of 64 packets then flush() like the forwarding path. Sender and receiver share this process.
 * Run: npx tsx bench/transport-throughput.ts [seconds]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger } from '../src/log.js';
import { ensureCertificates } from '../src/transport/certs.js';
import type { AcceptedConnection, TunnelConnection } from '../src/transport/types.js';
import { connectTunnel } from '../src/transport/wt-client.js';
import { createTunnelListener } from '../src/transport/wt-server.js';

const PACKET_BYTES = 1400;
const BATCH = 64;
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
    onBatchEnd() {},
  });
  const packet = Buffer.alloc(PACKET_BYTES, 0xab);
  const dropsBefore = sender.stats.queueDrops;
  const start = performance.now();
  const end = start + seconds * 1000;
  let offered = 0;
  // Offer a batch, then yield to the event loop (as a TUN read loop would).
  while (performance.now() < end) {
    for (let i = 0; i < BATCH; i++) sender.sendPacket(packet, 0, PACKET_BYTES);
    offered += BATCH;
    sender.flush();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  const elapsed = (performance.now() - start) / 1000;
  const rss = process.memoryUsage().rss / 1e6;
  console.log(
    `${label}: ${(packets / elapsed / 1000).toFixed(1)}k pkt/s, ${((bytes * 8) / elapsed / 1e6).toFixed(0)} Mbit/s received; ` +
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
  await run('client->server', client, server);
  await run('server->client', server, client);
  client.close({ reason: 'client_closed' });
  await server.closed;
  await listener.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
