import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureCertificates } from '/work/wt/h3guard/src/transport/certs.ts';
import { loadWebTransportLibrary } from '/work/wt/h3guard/src/transport/wt-lib.ts';
import { detectQuic } from '/work/wt/h3guard/src/transport/quic-native.ts';
import { randomBytes } from 'node:crypto';

const dir = await mkdtemp(path.join(tmpdir(), 'h3x-'));
const certs = await ensureCertificates(dir, { names: [] });
const lib = await loadWebTransportLibrary();
await lib.quicheLoaded;
const h3 = new lib.Http3Server({ port: 0, host: '127.0.0.1', secret: randomBytes(16).toString('hex'), cert: certs.certPem, privKey: certs.keyPem });
h3.setRequestCallback(async () => { console.log('session request!'); return { status: 404, path: '/x' }; });
h3.startServer();
await h3.ready;
const port = h3.address()!.port;
const sock = (h3 as any).transportInt.socket.socketInt;
let inPk = 0, outPk = 0;
sock.on('message', () => inPk++);
const origSend = (h3 as any).transportInt.socket.sendPacket;
(h3 as any).transportInt.socket.sendPacket = function (a: any) { outPk++; return origSend.call(this, a); };
console.log('port', port, 'listeners', sock.listeners('message').length);
const q = detectQuic();
if (!q.available) throw new Error(q.reason);
const t0 = Date.now();
const mk = () => {
  const rxData = new Uint8Array(1 << 16), rxMeta = new Uint32Array(300), txData = new Uint8Array(1 << 16), txMeta = new Uint32Array(100), blocked = new Uint8Array(4);
  const ep = new q.addon.QuicEndpoint({ server: false, alpn: process.env.ALPN ?? 'h3', maxUdpPayload: 1452, handshakeTimeoutMs: 10000, idleTimeoutMs: Number(process.env.IDLE ?? 3600000), rxData, rxMeta, txData, txMeta, blocked }, {
    onAccept: () => false,
    onHandshake: (slot, remote) => console.log(Date.now() - t0, 'handshake', slot, remote),
    onStream: (slot, d) => console.log('stream', d.length),
    onDatagrams: () => {},
    onClose: (slot, kind, code, reason) => console.log(Date.now() - t0, 'close', kind, code, reason, 'in', inPk, 'out', outPk),
    onWritable: () => {},
    onPath: () => {},
  });
  return ep;
};
const ep = mk();
ep.connect('127.0.0.1', port, 'localhost', certs.caPem, []);
setInterval(() => console.log(Date.now() - t0, 'in', inPk, 'out', outPk, ep.stats().connections), 30000).unref();
setTimeout(() => process.exit(0), Number(process.env.RUN ?? 20000));
