#!/usr/bin/env node
// bench/quic/udp-node.mjs - plain node:dgram, one JS send / one 'message' event per packet: the floor any
// design with a JS call per UDP packet pays. Same output as lib-dgram.mjs (run by bench/quic/run.sh).
import { createSocket } from 'node:dgram';
const [role, host, portArg, a4, a5, a6] = process.argv.slice(2);
const port = Number(portArg);
const cpuNow = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
if (role === 'server') {
  const dur = Number(a4);
  const sock = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  let n = 0, bytes = 0, t0 = 0, c0 = 0, n0 = 0, b0 = 0, started = false;
  sock.on('message', (msg) => {
    n++; bytes += msg.length;
    if (!started) {
      started = true;
      setTimeout(() => {
        t0 = performance.now(); c0 = cpuNow(); n0 = n; b0 = bytes;
        setTimeout(() => {
          const secs = (performance.now() - t0) / 1000, dn = n - n0, db = bytes - b0;
          console.log(JSON.stringify({ side: 'rx', route: 'udp_node', dgrams_per_s: Math.round(dn / secs), mbit_s: +(db * 8 / secs / 1e6).toFixed(1), cpu_s: +(cpuNow() - c0).toFixed(2), bytes: db, secs: +secs.toFixed(2) }));
          process.exit(0);
        }, dur * 1000);
      }, 1000);
    }
  });
  sock.bind(port, host);
} else {
  const dur = Number(a4), len = Number(a5), rate = Number(a6);
  const sock = createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
  sock.connect(port, host, async () => {
    const payload = Buffer.alloc(len);
    let sent = 0, c0 = 0, c1 = 0, s0 = 0, s1 = 0;
    const t0 = performance.now(), end = t0 + (dur + 1.5) * 1000;
    setTimeout(() => { c0 = cpuNow(); s0 = sent; setTimeout(() => { c1 = cpuNow(); s1 = sent; }, dur * 1000); }, 1000);
    while (performance.now() < end) {
      if (rate > 0) {
        const due = Math.floor(((performance.now() - t0) / 1000) * rate);
        while (sent < due) { sock.send(payload); sent++; }
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      // Keep the send queue short so that the event loop (timers) runs.
      if (sock.getSendQueueCount() > 64) { await new Promise(setImmediate); continue; }
      sock.send(payload); sent++;
      if ((sent & 255) === 0) await new Promise(setImmediate);
    }
    console.log(JSON.stringify({ side: 'tx', route: 'udp_node', sent, sent_per_s: Math.round((s1 - s0) / dur), cpu_s: +(c1 - c0).toFixed(2) }));
    process.exit(0);
  });
}
