#!/usr/bin/env node
// bench/quic/batch-sink.mjs - route (b)'s JavaScript share: the ngtcp2 spike's receiver (QGQ_PIPE=1) hands each
// received batch of datagrams to this process through a pipe; here every datagram is handled as quicgate's
// inbound path would (charged to the user's TokenBucket from dist/, copied into a staging buffer as TunWriter
// does; no TUN write, which costs the same on every route). Prints the rx JSON line of run.sh with the CPU of
// both processes. The pipe adds one write and one read per batch that an addon would not have.
//   node batch-sink.mjs NGTCP2_BIN HOST PORT CERT KEY DUR
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const [bin, host, port, cert, key, durArg] = process.argv.slice(2);
const dur = Number(durArg);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { TokenBucket } = await import(join(root, 'dist/gateway/bucket.js'));
const bucket = new TokenBucket(1e12, 1e12);
const child = spawn(bin, ['server', host, port, cert, key, String(dur)], { env: { ...process.env, QGQ_PIPE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
const cpuOf = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
const cpuSelf = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

const staging = Buffer.alloc(1 << 16);
let stagingUsed = 0;
const carry = Buffer.alloc(4096);
let carryLen = 0;
let n = 0, bytes = 0, batches = 0;
let started = false, t0 = 0, c0 = 0, k0 = 0, n0 = 0, b0 = 0, nb0 = 0;

function packet(buf, off, len) {
  n++;
  bytes += len;
  bucket.consume(len);
  if (stagingUsed + len > staging.length) stagingUsed = 0; // TunWriter would writeBatch here
  buf.copy(staging, stagingUsed, off, off + len);
  stagingUsed += len;
}

child.stdout.on('data', (chunk) => {
  batches++;
  let off = 0;
  if (carryLen > 0) { // a record split across two reads
    const need = carryLen < 2 ? 2 - carryLen : 2 + carry.readUInt16BE(0) - carryLen;
    const take = Math.min(need, chunk.length);
    chunk.copy(carry, carryLen, 0, take);
    carryLen += take; off = take;
    if (carryLen >= 2 && carryLen === 2 + carry.readUInt16BE(0)) { packet(carry, 2, carryLen - 2); carryLen = 0; }
    else if (carryLen >= 2 && off < chunk.length) { /* header done, body continues */ const more = Math.min(2 + carry.readUInt16BE(0) - carryLen, chunk.length - off); chunk.copy(carry, carryLen, off, off + more); carryLen += more; off += more; if (carryLen === 2 + carry.readUInt16BE(0)) { packet(carry, 2, carryLen - 2); carryLen = 0; } }
  }
  while (off + 2 <= chunk.length) {
    const len = chunk.readUInt16BE(off);
    if (off + 2 + len > chunk.length) break;
    packet(chunk, off + 2, len);
    off += 2 + len;
  }
  if (off < chunk.length) { chunk.copy(carry, 0, off); carryLen = chunk.length - off; }
  if (!started) {
    started = true;
    setTimeout(() => { t0 = performance.now(); c0 = cpuSelf(); k0 = cpuOf(child.pid); n0 = n; b0 = bytes; nb0 = batches; }, 1000);
  }
});
let childLine = '';
child.stderr.on('data', (d) => { childLine += d; });
child.on('exit', () => {
  const secs = (performance.now() - t0) / 1000;
  const rx = JSON.parse(childLine.split('\n').find((l) => l.startsWith('{"side":"rx"')) ?? '{}');
  const own = cpuSelf() - c0;
  const dn = n - n0, db = bytes - b0;
  console.log(JSON.stringify({ side: 'rx', route: 'ngtcp2+js', dgrams_per_s: Math.round(dn / secs), mbit_s: +(db * 8 / secs / 1e6).toFixed(1), cpu_s: +(own + (rx.cpu_s ?? 0)).toFixed(2), js_cpu_s: +own.toFixed(2), native_cpu_s: rx.cpu_s, bytes: db, secs: +secs.toFixed(2), per_batch: +(dn / Math.max(1, batches - nb0)).toFixed(1) }));
  process.exit(0);
});
