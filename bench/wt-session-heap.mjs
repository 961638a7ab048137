// JS heap per idle library session object (HttpWTSession of @fails-components/webtransport, the object the
// library makes for every WebTransport session), for judging the library patch's memory hunks: N sessions
// made as the HTTP/2 server path makes them (ready, nothing read), forced GC, heap used per session.
// Run: node --expose-gc bench/wt-session-heap.mjs [library dir] [sessions]
//   library dir: default node_modules/@fails-components/webtransport (patched); pass an unpatched copy to compare.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const lib = path.resolve(process.argv[2] ?? 'node_modules/@fails-components/webtransport');
const count = Number(process.argv[3] ?? 5000);
if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc');
const { HttpWTSession } = await import(pathToFileURL(path.join(lib, 'lib/session.js')).href);

const objint = { jsobj: undefined, getMaxDatagramSize: () => 16384, writeDatagram: () => ({ code: 'success' }) };
function heap() {
  for (let i = 0; i < 3; i++) globalThis.gc();
  return process.memoryUsage().heapUsed;
}
const keep = [];
for (let i = 0; i < 200; i++) keep.push(new HttpWTSession({ parentobj: {}, object: objint })); // warm up
keep.length = 0;
const before = heap();
for (let i = 0; i < count; i++) {
  const s = new HttpWTSession({ parentobj: {}, object: objint });
  s.onReady({});
  s.closed.catch(() => {});
  keep.push(s);
}
const after = heap();
console.log(`${path.relative(process.cwd(), lib) || lib}: ${((after - before) / count / 1024).toFixed(2)} KiB JS heap per idle HttpWTSession (${count} sessions, node ${process.version})`);

// The HTTP/2 capsule parser of each session, after its first scheduled write drain (every session has one:
// the control stream's first write schedules it).
const { Http2CapsuleParser } = await import(pathToFileURL(path.join(lib, 'lib/http2/node/capsuleparser.js')).href);
const { EventEmitter } = await import('node:events');
function parser() {
  return new Http2CapsuleParser({
    stream: new EventEmitter(),
    nativesession: { flowController: { receiveWindowSize: 16384n }, jsobj: {}, drainWrites() {}, closeConnection() {} },
    isclient: false,
    initialStreamSendWindowOffsetBidi: 16384,
    initialStreamSendWindowOffsetUnidi: 16384,
    initialStreamReceiveWindowOffset: 16384,
    streamShouldAutoTuneReceiveWindow: true,
    streamReceiveWindowSizeLimit: 6 << 20,
  });
}
keep.length = 0;
const parsersBefore = heap();
for (let i = 0; i < count; i++) {
  const p = parser();
  p.scheduleDrainWrites();
  keep.push(p);
}
await new Promise((resolve) => setImmediate(resolve));
const parsersAfter = heap();
console.log(`${path.relative(process.cwd(), lib) || lib}: ${((parsersAfter - parsersBefore) / count / 1024).toFixed(2)} KiB JS heap per Http2CapsuleParser after one write drain`);
