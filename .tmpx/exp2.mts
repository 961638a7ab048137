import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes, createHash, X509Certificate } from 'node:crypto';
import { ensureCertificates } from '/work/wt/h3guard/src/transport/certs.ts';
import { loadWebTransportLibrary } from '/work/wt/h3guard/src/transport/wt-lib.ts';
import { HttpClient } from '/work/wt/h3guard/node_modules/@fails-components/webtransport/lib/client.js';

(HttpClient.prototype as any).createWTSession = function () { return new Promise(() => {}); };
const dir = await mkdtemp(path.join(tmpdir(), 'h3x-'));
const certs = await ensureCertificates(dir, { names: [] });
const lib = await loadWebTransportLibrary();
await lib.quicheLoaded;
const h3 = new lib.Http3Server({ port: 0, host: '127.0.0.1', secret: randomBytes(16).toString('hex'), cert: certs.certPem, privKey: certs.keyPem });
h3.setRequestCallback(async () => { console.log('session request!'); return { status: 404, path: '/x' }; });
h3.startServer();
await h3.ready;
const port = h3.address()!.port;
const sockObj = (h3 as any).transportInt.socket;
const sock = sockObj.socketInt;
const lis = sock.listeners('message')[0];
sock.removeAllListeners('message');
const t0 = Date.now();
const mode = process.env.MODE ?? 'after'; // 'after' = blackhole after handshake; 'during' = after first Initial
const stats = new Map<number, { inN: number; dropped: number; out: number; lastOut: number; firstIn: number }>();
sock.on('message', (msg: Buffer, rinfo: any) => {
  let s = stats.get(rinfo.port);
  if (!s) { s = { inN: 0, dropped: 0, out: 0, lastOut: 0, firstIn: Date.now() - t0 }; stats.set(rinfo.port, s); }
  s.inN++;
  const black = mode === 'during' ? s.inN > 1 : Date.now() - t0 > 2000;
  if (black) { s.dropped++; return; }
  lis.call(sock, msg, rinfo);
});
const origSend = sockObj.sendPacket;
sockObj.sendPacket = function (a: any) { const s = stats.get(a.port); if (s) { s.out++; s.lastOut = Date.now() - t0; } return origSend.call(this, a); };
const hash = createHash('sha256').update(new X509Certificate(certs.certPem).raw).digest();
const wt = new lib.WebTransport(`https://127.0.0.1:${port}/x`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: hash }], quicConnectTimeout: 3600000 } as any);
wt.closed.then((x) => console.log(Date.now() - t0, 'client closed', x), (e) => console.log(Date.now() - t0, 'client closed err', String(e)));
wt.ready.catch(() => {});
setInterval(() => console.log(Date.now() - t0, JSON.stringify([...stats])), 15000).unref();
setTimeout(() => { console.log('final', JSON.stringify([...stats])); process.exit(0); }, Number(process.env.RUN ?? 20000));
