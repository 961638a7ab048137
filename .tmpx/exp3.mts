import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dgram from 'node:dgram';
import { randomBytes, createHash, X509Certificate } from 'node:crypto';
import { ensureCertificates } from '/work/wt/h3guard/src/transport/certs.ts';
import { loadWebTransportLibrary, findHttp3Socket, gateHttp3Datagrams } from '/work/wt/h3guard/src/transport/wt-lib.ts';
import { serverConnectionIds } from '/work/wt/h3guard/src/transport/h3-packet.ts';
import { HttpClient } from '/work/wt/h3guard/node_modules/@fails-components/webtransport/lib/client.js';

(HttpClient.prototype as any).createWTSession = function () { return new Promise(() => {}); };
const dir = await mkdtemp(path.join(tmpdir(), 'h3x-'));
const certs = await ensureCertificates(dir, { names: [] });
const lib = await loadWebTransportLibrary();
await lib.quicheLoaded;
const h3 = new lib.Http3Server({ port: 0, host: '127.0.0.1', secret: randomBytes(16).toString('hex'), cert: certs.certPem, privKey: certs.keyPem });
h3.setRequestCallback(async () => ({ status: 404, path: '/x' }));
h3.startServer();
await h3.ready;
const port = h3.address()!.port;
const t0 = Date.now();
// per client port: mode and odcid
const conns = new Map<number, { mode: string; odcid?: Buffer; n: number; cutAt?: number; answered?: number }>();
const modes = ['after', 'during'];
let next = 0;
gateHttp3Datagrams(findHttp3Socket(h3)!, (msg, rinfo) => {
  let c = conns.get(rinfo.port);
  if (rinfo.port === probe.address().port) return true;
  if (!c) { c = { mode: modes[next++] ?? 'x', n: 0 }; conns.set(rinfo.port, c); c.odcid = Buffer.from(msg.subarray(6, 6 + msg[5]!)); }
  c.n++;
  const cut = c.mode === 'during' ? c.n > 1 : Date.now() - t0 > 2000;
  if (cut && c.cutAt === undefined) c.cutAt = Date.now() - t0;
  return !cut;
});
const probe = dgram.createSocket('udp4');
await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
probe.on('message', (msg) => {
  const dcid = msg.subarray(1, 9); // responses... just record time per probe target by matching nothing: mark all unanswered
  for (const c of conns.values()) if (c.answered === undefined && c.pendingProbe) { }
  lastResponse = { t: Date.now() - t0, len: msg.length, first: msg[0] };
});
let lastResponse: any;
const hash = createHash('sha256').update(new X509Certificate(certs.certPem).raw).digest();
for (let i = 0; i < 2; i++) {
  const wt = new lib.WebTransport(`https://127.0.0.1:${port}/x`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: hash }], quicConnectTimeout: 3600000, requireUnreliable: true } as any);
  wt.ready.catch(() => {}); wt.closed.catch(() => {});
  await new Promise((r) => setTimeout(r, 500));
}
// probe each connection separately, sequentially: send to one, wait 1 s for any reply
setInterval(async () => {
  for (const [p, c] of conns) {
    if (c.answered !== undefined || !c.odcid) continue;
    lastResponse = undefined;
    const s0 = serverConnectionIds(c.odcid, 1)[0]!;
    probe.send(Buffer.concat([Buffer.from([0x40]), s0, randomBytes(60)]), port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 1000));
    if (lastResponse) { c.answered = lastResponse.t; console.log('ANSWER', c.mode, 'cut at', c.cutAt, 'answered at', c.answered, JSON.stringify(lastResponse)); }
  }
}, 5000);
setInterval(() => console.log(Date.now() - t0, JSON.stringify([...conns].map(([p, c]) => [p, c.mode, c.n, c.cutAt, c.answered]))), 60000).unref();
setTimeout(() => process.exit(0), Number(process.env.RUN ?? 720000));
