/**
 * bench/h3-linger.ts - how long the library's QUICHE keeps a QUIC connection that hears nothing more: the figure
 * behind h3-connection-guard.ts's QUICHE_IDLE_TIMEOUT_MS / QUICHE_HANDSHAKE_LIMIT_MS (docs/robustness.md).
 *
 *   npx tsx bench/h3-linger.ts            (about 11 minutes; SECONDS=720 to change)
 *
 * An Http3Server of the pinned library on 127.0.0.1 with the guard's datagram gate (wt-lib.ts) in front of
 * QUICHE; two library clients (their session request held back): "handshake" finishes its handshake and then
 * sends nothing; "initial" has every datagram after its first Initial dropped, as a cut connection has. Every
 * 5 s a probe (a short-header datagram to the connection's first server ID, from another socket) goes to each
 * connection still alive: QUICHE drops it silently while it holds the connection, and answers (stateless reset)
 * once it has dropped it. Prints when each was first answered, after its last datagram that reached QUICHE.
 */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureCertificates } from '../src/transport/certs.js';
import { serverConnectionIds } from '../src/transport/h3-packet.js';
import { findHttp3Socket, gateHttp3Datagrams, loadWebTransportLibrary } from '../src/transport/wt-lib.js';

type CreateSession = (...args: unknown[]) => Promise<unknown>;
const clientModule: string = '../node_modules/@fails-components/webtransport/lib/client.js';
const proto = ((await import(clientModule)) as { HttpClient: { prototype: { createWTSession: CreateSession } } }).HttpClient.prototype;
proto.createWTSession = () => new Promise(() => {});

const seconds = Number(process.env.SECONDS ?? 720);
const dir = await mkdtemp(path.join(tmpdir(), 'qg-h3-linger-'));
const certs = await ensureCertificates(dir, { names: [] });
const lib = await loadWebTransportLibrary();
await lib.quicheLoaded;
const server = new lib.Http3Server({ port: 0, host: '127.0.0.1', secret: randomBytes(16).toString('hex'), cert: certs.certPem, privKey: certs.keyPem });
server.setRequestCallback(async () => ({ status: 404, path: '/x' }));
server.startServer();
await server.ready;
const port = server.address()!.port;
const t0 = Date.now();
const now = (): number => Date.now() - t0;

interface Watched {
  readonly name: 'handshake' | 'initial';
  readonly originalDcid: Buffer;
  datagrams: number;
  lastPassedMs: number;
  answeredMs?: number;
}
const byPort = new Map<number, Watched>();
const names: Watched['name'][] = ['handshake', 'initial'];
const probe = dgram.createSocket('udp4');
await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', resolve));
let answered = false;
probe.on('message', () => (answered = true));

const socket = findHttp3Socket(server);
if (socket === null || !gateHttp3Datagrams(socket, (msg, rinfo) => gate(msg, rinfo.port))) throw new Error('the library internals changed');
function gate(msg: Buffer, fromPort: number): boolean {
  if (fromPort === probe.address().port) return true;
  let w = byPort.get(fromPort);
  if (w === undefined) {
    w = { name: names[byPort.size] ?? 'initial', originalDcid: Buffer.from(msg.subarray(6, 6 + msg[5]!)), datagrams: 0, lastPassedMs: 0 };
    byPort.set(fromPort, w);
  }
  w.datagrams++;
  if (w.name === 'initial' && w.datagrams > 1) return false;
  w.lastPassedMs = now();
  return true;
}

const hash = createHash('sha256').update(new X509Certificate(certs.certPem).raw).digest();
for (let i = 0; i < 2; i++) {
  const client = new lib.WebTransport(`https://127.0.0.1:${port}/x`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: hash }], quicConnectTimeout: 3_600_000, requireUnreliable: true } as never);
  client.ready.catch(() => {});
  client.closed.catch(() => {});
  await new Promise((r) => setTimeout(r, 500));
}

while (now() < seconds * 1000 && [...byPort.values()].some((w) => w.answeredMs === undefined)) {
  await new Promise((r) => setTimeout(r, 4000));
  for (const w of byPort.values()) {
    if (w.answeredMs !== undefined) continue;
    answered = false;
    probe.send(Buffer.concat([Buffer.from([0x40]), serverConnectionIds(w.originalDcid, 1)[0]!, randomBytes(60)]), port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 500));
    if (answered) w.answeredMs = now();
  }
}
for (const w of byPort.values()) {
  const gone = w.answeredMs === undefined ? `still held after ${((now() - w.lastPassedMs) / 1000).toFixed(1)} s` : `gone ${((w.answeredMs - w.lastPassedMs) / 1000).toFixed(1)} s after its last datagram (first answered probe)`;
  console.log(`${w.name}: ${w.datagrams} datagrams from the client, ${gone}`);
}
server.stopServer();
probe.close();
await rm(dir, { recursive: true, force: true });
process.exit(0);
