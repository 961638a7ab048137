// A host that opens HTTP/3 QUIC connections and never sends a WebTransport session request, for
// test/e2e/h3-idle.test.ts: real QUIC handshakes by the library's own client (its step that sends the request,
// HttpClient.createWTSession of @fails-components/webtransport 1.6.8, held back), one UDP socket each. One JSON
// line per phase on stdout. Usage:
//   node h3-holder.mjs '{"host":"192.0.2.1","port":4433,"caFile":"…","count":200,"connectTimeoutMs":4000,
//                        "lateMs":6000,"holdMs":15000}'
//   held: how many completed the QUIC handshake (held, no request), how many did not within connectTimeoutMs
//   late: lateMs after the start, each held connection sends its session request at last (wrong password);
//         answered = how many got any answer (a session or a refusal) within 5 s
// Or, with "junkInitials": N, N UDP sockets each send one 1200-byte QUIC v1 Initial that QUICHE cannot
// decrypt (random IDs and payload, as a spoofer or a broken client would), then {"event":"junk"}.
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { WebTransport, quicheLoaded } from '@fails-components/webtransport';
import { HttpClient } from '../../../node_modules/@fails-components/webtransport/lib/client.js';

const opts = JSON.parse(process.argv[2] ?? '{}');
const out = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const started = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (opts.junkInitials) {
  for (let i = 0; i < opts.junkInitials; i++) {
    const socket = createSocket('udp4');
    const head = Buffer.concat([Buffer.from([0xc3, 0, 0, 0, 1, 8]), randomBytes(8), Buffer.from([8]), randomBytes(8), Buffer.from([0, 0x44, 0xd0])]);
    await new Promise((r) => socket.send(Buffer.concat([head, randomBytes(1200 - head.length)]), opts.port, opts.host, r));
    socket.close();
  }
  out({ event: 'junk', sent: opts.junkInitials });
  process.exit(0);
}

// The certificate the gateway serves, checked against its CA over TLS (as quicgate's own HTTP/3 client does).
const certificate = await new Promise((resolve, reject) => {
  const s = tlsConnect({ host: opts.host, port: opts.port, ca: readFileSync(opts.caFile, 'utf8'), servername: 'localhost', ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
  s.once('secureConnect', () => {
    resolve(s.getPeerX509Certificate().raw);
    s.destroy();
  });
  s.once('error', reject);
});
const hash = createHash('sha256').update(certificate).digest();

await quicheLoaded;
const original = HttpClient.prototype.createWTSession;
const late = [];
HttpClient.prototype.createWTSession = function (sessionobj, path) {
  late.push(() => original.call(this, sessionobj, path));
  return new Promise(() => {});
};

const query = Buffer.from(JSON.stringify({ u: 'holder', p: 'wrong', a: [], v: 'holder' }), 'utf8').toString('base64url');
const url = `https://${opts.host}:${opts.port}/quicgate?qg=${query}`;
const clients = [];
let failed = 0;
for (let i = 0; i < opts.count; i++) {
  const wt = new WebTransport(url, { serverCertificateHashes: [{ algorithm: 'sha-256', value: hash }], quicConnectTimeout: opts.connectTimeoutMs, webTransportConnectTimeout: 60_000, requireUnreliable: true });
  const settled = { answered: false };
  wt.ready.then(() => (settled.answered = true), () => (settled.answered = true));
  wt.closed.catch(() => {});
  clients.push({ wt, settled });
  if (i % 16 === 15) await sleep(20);
}
// The handshake of every client either completed (its request held back) or timed out.
const deadline = Date.now() + opts.connectTimeoutMs + 2000;
while (late.length + failed < opts.count && Date.now() < deadline) {
  failed = clients.filter((c) => c.settled.answered).length;
  await sleep(50);
}
out({ event: 'held', attempted: opts.count, handshakes: late.length, noHandshake: opts.count - late.length, atMs: Date.now() - started });

await sleep(Math.max(0, opts.lateMs - (Date.now() - started)));
const heldClients = clients.filter((c) => !c.settled.answered);
for (const send of late) send().catch(() => {});
await sleep(5000);
out({ event: 'late', tried: late.length, answered: heldClients.filter((c) => c.settled.answered).length, atMs: Date.now() - started });

await sleep(Math.max(0, opts.holdMs - (Date.now() - started)));
for (const { wt } of clients) {
  try {
    wt.close();
  } catch {
    // already closed
  }
}
out({ event: 'done' });
setTimeout(() => process.exit(0), 500);
