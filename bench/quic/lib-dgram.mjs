#!/usr/bin/env node
// bench/quic/lib-dgram.mjs - spike for route (a): QUIC datagrams one way through the WebTransport library's
// HTTP/3 module alone (no quicgate), between two processes. Run by bench/quic/run.sh in its namespaces.
//
//   node lib-dgram.mjs server HOST PORT CERT KEY DUR        prints one JSON line when the client is done
//   node lib-dgram.mjs client HOST PORT HASHHEX DUR LEN RATE   RATE 0 = as fast as the writer takes them
//
// Both report datagrams and bytes, and their own CPU seconds (process.cpuUsage) over the measured window.
import { readFileSync } from 'node:fs';
import dgram from 'node:dgram';
import { WebTransport, Http3Server, quicheLoaded } from '@fails-components/webtransport';

const [role, host, portArg, a4, a5, a6, a7, a8] = process.argv.slice(2);
// FIX (comma list) tries JS-side changes around the library, to see what each buys:
//   addr - the HTTP/3 module calls socket.address() (a getsockname syscall + object) for EVERY received packet:
//          memoize it per socket; rx - take each datagram straight from the session's onDatagramReceived (no
//          ReadableStream, no promise per datagram); tx - write each datagram with the native writeDatagram
//          (no WritableStream per datagram). All three reach into the library: bench only.
const FIX = new Set((process.env.FIX ?? '').split(',').filter(Boolean));
if (FIX.has('addr')) {
  const original = dgram.Socket.prototype.address;
  const cache = new WeakMap();
  dgram.Socket.prototype.address = function address() {
    let a = cache.get(this);
    if (a === undefined) { a = original.call(this); cache.set(this, a); }
    return a;
  };
}
const internals = (s) => s.objint ?? s.sessionint?.objint;
const port = Number(portArg);
const cpuNow = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

if (role === 'server') {
  const dur = Number(a6);
  await quicheLoaded;
  const server = new Http3Server({ port, host, secret: 'x'.repeat(32), cert: readFileSync(a4, 'utf8'), privKey: readFileSync(a5, 'utf8'), quicheNodeSocketOptions: { recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 } });
  server.setRequestCallback(async () => ({ status: 200, path: '/s' }));
  server.startServer();
  await server.ready;
  console.error('server ready');
  const reader = server.sessionStream('/s').getReader();
  const { value: session } = await reader.read();
  await session.ready;
  let n = 0, bytes = 0, t0 = 0, c0 = 0, n0 = 0, b0 = 0;
  const started = performance.now();
  // Measure from 1 s after the first datagram until DUR s after that (warm-up excluded).
  const done = new Promise((resolve) => {
    setTimeout(() => { t0 = performance.now(); c0 = cpuNow(); n0 = n; b0 = bytes; setTimeout(resolve, dur * 1000); }, 1000);
  });
  if (FIX.has('rx')) {
    internals(session).jsobj.onDatagramReceived = ({ datagram }) => { n++; bytes += datagram.byteLength; };
  } else {
    const dg = session.datagrams.readable.getReader();
    (async () => { for (;;) { const { value, done: end } = await dg.read(); if (end) break; n++; bytes += value.byteLength; } })().catch(() => {});
  }
  await done;
  const secs = (performance.now() - t0) / 1000, cpu = cpuNow() - c0, dn = n - n0, db = bytes - b0;
  console.log(JSON.stringify({ side: 'rx', route: 'lib', fix: [...FIX].join(','), dgrams_per_s: Math.round(dn / secs), mbit_s: +(db * 8 / secs / 1e6).toFixed(1), cpu_s: +cpu.toFixed(2), bytes: db, secs: +secs.toFixed(2), since_start_s: +((t0 - started) / 1000).toFixed(1) }));
  process.exit(0);
} else if (role === 'client') {
  const dur = Number(a5), len = Number(a6), rate = Number(a7);
  await quicheLoaded;
  const wt = new WebTransport(`https://${host}:${port}/s`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: new Uint8Array(Buffer.from(a4, 'hex')) }] });
  wt.closed.catch(() => {});
  await wt.ready;
  console.error('client ready, maxDatagramSize', wt.datagrams.maxDatagramSize);
  const writer = wt.datagrams.createWritable().getWriter();
  const payload = new Uint8Array(len);
  if (FIX.has('tx')) {
    const native = internals(wt);
    // writeDatagram queues into quiche; 'blocked' means its queue is full (the datagram is still taken or
    // dropped by quiche, as with the writer). Yield to the event loop every 64 so that packets go out.
    writer.write = (chunk) => { native.writeDatagram(chunk); return Promise.resolve(); };
    Object.defineProperty(writer, 'desiredSize', { get: () => 1 });
  }
  let sent = 0, c0 = 0, c1 = 0, s0 = 0, s1 = 0;
  const t0 = performance.now();
  // CPU over the same window as the receiver's: from 1 s to 1 + DUR s.
  setTimeout(() => { c0 = cpuNow(); s0 = sent; setTimeout(() => { c1 = cpuNow(); s1 = sent; }, dur * 1000); }, 1000);
  const end = t0 + (dur + 1.5) * 1000;
  if (rate === 0) {
    while (performance.now() < end) {
      if ((writer.desiredSize ?? 0) <= 0) await writer.ready;
      writer.write(payload).catch(() => {});
      sent++;
      if ((sent & 255) === 0) await new Promise(setImmediate);
    }
  } else {
    // Paced: every 1 ms, the datagrams due by now.
    await new Promise((resolve) => {
      const tick = setInterval(() => {
        const now = performance.now();
        const due = Math.floor(((now - t0) / 1000) * rate);
        while (sent < due) { writer.write(payload).catch(() => {}); sent++; }
        if (now >= end) { clearInterval(tick); resolve(); }
      }, 1);
    });
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ side: 'tx', route: 'lib', sent, sent_per_s: Math.round((s1 - s0) / dur), cpu_s: +(c1 - c0).toFixed(2), secs: +secs.toFixed(2) }));
  await new Promise((r) => setTimeout(r, 500));
  process.exit(0);
}
