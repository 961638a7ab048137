// A hostile quicgate client for test/e2e/hostile.test.ts, built on the compiled library (dist/): it
// authenticates like the real client (connectTunnel) and then abuses the connection. One JSON line per event
// on stdout. Usage: node hostile-client.mjs '<json options>' (options.transport: h2 (default), h3 or quic)
//   mode "abuse":  forged sources, oversize/garbage raw datagrams, huge fragmented packets, garbage control
//                  lines and a keepalive flood for `seconds`; then prints totals and stays connected.
//   mode "login":  `attempts` connection attempts with user/password; prints each outcome and its duration.
//   mode "hold":   connect, print the assignment, keep alive; SIGTERM closes cleanly (client_closed); a close
//                  from the gateway (e.g. admin_kill) is printed and ends the process.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const dist = resolve(import.meta.dirname, '../../../dist');
const { connectTunnel } = await import(`${dist}/transport/wt-client.js`);
const { silentLogger } = await import(`${dist}/log.js`);
const { rejectedError } = await import(`${dist}/transport/wt-auth.js`);

const opts = JSON.parse(process.argv[2] ?? '{}');
const out = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const base = {
  url: opts.url,
  previousAddresses: [],
  transport: opts.transport ?? 'h2',
  caPem: readFileSync(opts.caFile, 'utf8'),
  sendQueuePackets: 4096,
  logger: silentLogger(),
  connectTimeoutMs: 10_000,
};

function ipv4Packet(src, dst, size) {
  const b = Buffer.alloc(size, 0x5a);
  b[0] = 0x45;
  b.writeUInt16BE(size, 2);
  b[8] = 64;
  b[9] = 17;
  b.writeUInt16BE(0, 10);
  src.split('.').forEach((x, i) => (b[12 + i] = Number(x)));
  dst.split('.').forEach((x, i) => (b[16 + i] = Number(x)));
  // UDP header to port 9 (discard), checksum 0 (none).
  if (size >= 28) {
    b.writeUInt16BE(40000, 20);
    b.writeUInt16BE(9, 22);
    b.writeUInt16BE(size - 20, 24);
    b.writeUInt16BE(0, 26);
  }
  return b;
}

async function connect(user, password) {
  const conn = await connectTunnel({ ...base, user, password });
  const assign = await new Promise((resolveAssign, reject) => {
    const timer = setTimeout(() => reject(new Error('no assign')), 10_000);
    // HTTP/3: a refusal is the session's close before any assignment (like TunnelClient).
    conn.closed.then((info) => {
      clearTimeout(timer);
      reject(info.refused ? rejectedError(info.refused, conn.kind) : new Error(`closed before assign: ${info.reason}`));
    });
    conn.setControlHandler((m) => {
      if (m.type === 'assign') {
        clearTimeout(timer);
        resolveAssign(m);
      }
    });
  });
  return { conn, assign };
}

if (opts.mode === 'login') {
  for (let i = 0; i < opts.attempts; i++) {
    const started = performance.now();
    try {
      const { conn, assign } = await connect(opts.user, opts.password);
      out({ attempt: i, ok: true, ms: performance.now() - started, ipv4: assign.ipv4?.address ?? null });
      conn.close({ reason: 'client_closed' });
      await conn.closed;
    } catch (err) {
      out({ attempt: i, ok: false, ms: performance.now() - started, code: err.code, status: err.details?.status, reason: err.details?.reason, message: String(err.message) });
    }
  }
  process.exit(0);
}

if (opts.mode === 'abuse') {
  const { conn, assign } = await connect(opts.user, opts.password);
  const own = assign.ipv4.address;
  const gateway = assign.ipv4.gateway;
  out({ event: 'assign', ipv4: own });
  let ended = null;
  conn.closed.then((info) => {
    ended = info;
    out({ event: 'closed', ...info });
  });
  conn.setControlHandler(() => {});
  // A second datagram writer on the same session (bypassing our encoder, on purpose): raw bytes go out as
  // datagrams whatever our own wire does. WebTransport: a writer of the session's datagrams; quicgate's QUIC:
  // the endpoint's send area of this connection's slot (fields private to QuicConnection, reached on purpose).
  let rawWrite;
  let junkUdp = () => {};
  if (conn.kind === 'quic') {
    rawWrite = (bytes) => {
      conn.host.queueDatagram(conn.slot, Buffer.from(bytes));
      conn.host.flush();
    };
    // Plus UDP packets that are no QUIC at all, and short-header packets for connection IDs nobody issued,
    // at the gateway's QUIC port: the addon drops and counts them.
    const { createSocket } = await import('node:dgram');
    const udp = createSocket('udp4');
    const target = new URL(opts.url);
    junkUdp = () => {
      udp.send(Buffer.alloc(40, 0x00), Number(target.port), target.hostname);
      const shortHeader = Buffer.alloc(1200, 0x33);
      shortHeader[0] = 0x40;
      udp.send(shortHeader, Number(target.port), target.hostname);
      counts.junkUdp += 2;
    };
  } else {
    const raw = conn.session.datagrams.createWritable().getWriter();
    raw.closed.then(undefined, () => {});
    rawWrite = (bytes) => raw.write(bytes).then(undefined, () => {});
  }
  const counts = { forged: 0, oversizeDatagrams: 0, garbageDatagrams: 0, hugePackets: 0, keepalives: 0, garbageControl: 0, junkUdp: 0 };
  const until = Date.now() + opts.seconds * 1000;
  let serial = 0;
  while (Date.now() < until && ended === null) {
    // Forged sources: other tunnel addresses, outside addresses, the gateway's own.
    for (let i = 0; i < 50; i++) {
      const forged = [`198.18.${(serial >> 8) & 255}.${serial & 255}`, `10.0.0.${serial & 255}`, gateway][i % 3];
      serial++;
      const p = ipv4Packet(forged, gateway, 200);
      if (conn.sendPacket(p, 0, p.length)) counts.forged++;
    }
    // Huge but well-formed packets from the client's own address, fragmented by the framing (60 KB each).
    for (let i = 0; i < 2; i++) {
      const p = ipv4Packet(own, gateway, 60_000);
      if (conn.sendPacket(p, 0, p.length)) counts.hugePackets++;
    }
    conn.flush();
    // Raw datagrams past the HTTP/2 limit, and small ones that do not decode (written whatever the back
    // pressure: a hostile client does not wait its turn).
    rawWrite(new Uint8Array(20_000).fill(0x7f));
    counts.oversizeDatagrams++;
    for (let i = 0; i < 20; i++) {
      rawWrite(new Uint8Array([0, 0, 1, 2, 3])); // a record of length 0: never decodes
      counts.garbageDatagrams++;
    }
    // Control stream: a keepalive flood and lines that are not protocol.
    let lines = '';
    for (let i = 0; i < (opts.keepalivesPerTick ?? 200); i++) lines += `{"type":"keepalive","t":${Date.now()}}\n`;
    lines += 'not json\n{"type":"assign"}\n{"type":"close","reason":123}\n';
    conn.writeControlLine(lines);
    counts.keepalives += opts.keepalivesPerTick ?? 200;
    counts.garbageControl += 3;
    junkUdp();
    await new Promise((r) => setTimeout(r, 10));
  }
  out({ event: 'done', counts, stats: conn.stats });
  // Stay connected (the test kills this process).
  setInterval(() => conn.sendControl({ type: 'keepalive', t: Date.now() }), 500);
}

if (opts.mode === 'hold') {
  const { conn, assign } = await connect(opts.user, opts.password);
  out({ event: 'assign', sessionId: assign.sessionId, ipv4: assign.ipv4?.address ?? null });
  const timer = setInterval(() => conn.sendControl({ type: 'keepalive', t: Date.now() }), 500);
  conn.closed.then((info) => {
    clearInterval(timer);
    out({ event: 'closed', ...info });
    setTimeout(() => process.exit(0), 50);
  });
  process.once('SIGTERM', () => conn.close({ reason: 'client_closed', message: 'SIGTERM' }));
}
