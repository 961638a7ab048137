// Bench-only reference for bench/scale.ts: a bare node:http2 server over TLS (the same server settings the
// WebTransport library uses, no library, no quicgate) that holds every session and its one CONNECT stream,
// like an idle tunnel session. Run with --expose-gc --import ./mem-probe.mjs; SIGUSR2 reports its memory.
// argv: certFile keyFile. Prints {"msg":"listening","port":N} on stdout.
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';

const [certFile, keyFile] = process.argv.slice(2);
const held = new Set();
const server = http2.createSecureServer({
  cert: readFileSync(certFile),
  key: readFileSync(keyFile),
  allowHTTP1: true,
  settings: {
    enableConnectProtocol: true,
    customSettings: { 0x2b61: 16384, 0x2b62: 16384, 0x2b63: 16384, 0x2b64: 100, 0x2b65: 100 },
  },
  remoteCustomSettings: [0x2b61, 0x2b62, 0x2b63, 0x2b64, 0x2b65],
});
server.on('session', (session) => session.on('error', () => {}));
server.on('stream', (stream) => {
  stream.on('error', () => {});
  stream.respond({ ':status': 200 });
  held.add(stream);
  stream.on('close', () => held.delete(stream));
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: server.address().port })}\n`);
});
