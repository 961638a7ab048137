import { pino } from 'pino';
import { ensureCertificates } from '/work/wt/quic/src/transport/certs.js';
import { createQuicListener } from '/work/wt/quic/src/transport/quic-server.js';
import { connectQuic } from '/work/wt/quic/src/transport/quic-client.js';
import { detectQuic } from '/work/wt/quic/src/transport/quic-native.js';
import { readFileSync } from 'node:fs';

const logger = pino({ level: 'debug' });
const support = detectQuic();
if (!support.available) throw new Error(support.reason);
const m = await ensureCertificates('/tmp/qgq/certs', { names: ['127.0.0.1', 'localhost'] });
console.log(Object.keys(m));
const listener = createQuicListener({ addon: support.addon, host: '127.0.0.1', port: 0, cert: (m as any).certPem, key: (m as any).keyPem, sendQueuePackets: 1024, logger,
  admission: async (r) => r.password === 'pw' ? { ok: true, user: r.user } : { ok: false, status: 401, code: 'QG_ERR_AUTH_FAILED', message: 'bad password' } });
let got = 0;
listener.onConnection(({ connection, request }) => {
  console.log('server: connection', request.user, connection.peer, connection.maxDatagramBytes);
  connection.setReceiver({ onPacket: (d, o, l) => { got++; connection.sendPacket(d, o, l); }, onBatchEnd: () => connection.flush() });
  connection.setControlHandler((msg) => { console.log('server got control', msg); connection.sendControl({ type: 'keepalive_ack', t: (msg as any).t }); });
});
const ca = (m as any).caPem ?? readFileSync('/tmp/qgq/certs/ca.pem', 'utf8');
const creds = { user: 'alice', password: 'pw', previousAddresses: [], clientVersion: 'smoke', resume: null };
const c = await connectQuic({ host: '127.0.0.1', port: listener.port, credentials: creds, caPem: ca, pins: [], connectTimeoutMs: 3000, sendQueuePackets: 1024, logger });
console.log('client connected', c.maxDatagramBytes);
let echoed = 0;
c.setReceiver({ onPacket: () => { echoed++; }, onBatchEnd: () => {} });
c.setControlHandler((msg) => console.log('client got control', msg));
c.sendControl({ type: 'keepalive', t: 1 });
await new Promise((r) => setTimeout(r, 200));
const pkt = Buffer.alloc(1400, 7);
for (let round = 0; round < 100; round++) { for (let i = 0; i < 100; i++) c.sendPacket(pkt, 0, 1400); c.flush(); await new Promise((r) => setImmediate(r)); }
await new Promise((r) => setTimeout(r, 500));
console.log('sent 10000, server got', got, 'client echoed', echoed, listener.quicStats());
c.close({ reason: 'client_closed' });
// bad password
const bad = await connectQuic({ host: '127.0.0.1', port: listener.port, credentials: { ...creds, password: 'no' }, caPem: ca, pins: [], connectTimeoutMs: 3000, sendQueuePackets: 1024, logger });
console.log('bad closed with', await bad.closed);
// wrong pin
try { await connectQuic({ host: '127.0.0.1', port: listener.port, credentials: creds, pins: [new Uint8Array(32)], connectTimeoutMs: 3000, sendQueuePackets: 1024, logger }); console.log('PIN NOT REFUSED'); } catch (e) { console.log('wrong pin:', (e as any).code, (e as Error).message); }
try { await connectQuic({ host: '127.0.0.1', port: listener.port, credentials: creds, connectTimeoutMs: 3000, sendQueuePackets: 1024, logger, pins: [] }); console.log('SYSTEM CA NOT REFUSED'); } catch (e) { console.log('system ca:', (e as any).code, (e as Error).message); }
await listener.close();
console.log('done');
