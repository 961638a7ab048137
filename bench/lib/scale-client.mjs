// One process holding many tunnel sessions (bench/scale.ts runs it inside a client namespace).
// argv: url user password caFile count concurrency. Opens `count` sessions (`concurrency` in flight), then
// takes commands on stdin, one per line:
//   open N   open N more sessions
//   ping     each session sends one ICMP echo to the gateway's tunnel address and waits for the reply
//   close    closes all sessions and exits
// Results are JSON lines on stdout with a `msg` field ("connected", "pinged", "closed").
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { connectTunnel } from '../../dist/transport/wt-client.js';
import pino from 'pino';

const [url, user, password, caFile, countArg, concArg] = process.argv.slice(2);
const concurrency = Number(concArg);
const caPem = readFileSync(caFile, 'utf8');
const logger = pino({ level: 'silent' });
const sessions = [];
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

function ipWord(a) { return a.split('.').reduce((w, o) => w * 256 + Number(o), 0); }
function checksum(buf, start, end) {
  let s = 0;
  for (let i = start; i < end; i += 2) s += (buf[i] << 8) | (buf[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
function echo(src, dst, id) {
  const p = Buffer.alloc(28 + 8);
  p[0] = 0x45; p.writeUInt16BE(p.length, 2); p[8] = 64; p[9] = 1;
  p.writeUInt32BE(ipWord(src), 12); p.writeUInt32BE(ipWord(dst), 16);
  p.writeUInt16BE(checksum(p, 0, 20), 10);
  p[20] = 8; p.writeUInt16BE(id, 24); p.writeUInt16BE(1, 26);
  p.writeUInt16BE(checksum(p, 20, p.length), 22);
  return p;
}

async function open() {
  const t0 = performance.now();
  const connection = await connectTunnel({ url, user, password, previousAddresses: [], transport: 'h2', caPem,
    sendQueuePackets: 64, logger, connectTimeoutMs: 30000 });
  const s = { connection, assign: null, replied: null, ms: 0 };
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no assign')), 30000);
    connection.setControlHandler((m) => {
      if (m.type === 'assign') { s.assign = m; clearTimeout(timer); resolve(); }
      else if (m.type === 'keepalive') connection.sendControl({ type: 'keepalive_ack', t: m.t });
    });
  });
  connection.setReceiver({ onPacket(data, off) { if (data[off + 9] === 1 && data[off + 20] === 0) s.replied?.(); }, onBatchEnd() {} });
  s.ms = performance.now() - t0;
  return s;
}

async function openMany(count) {
  const t0 = performance.now();
  const batch = [];
  let next = 0, failed = 0, firstError = '';
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next++;
      try { batch.push(await open()); } catch (e) { failed++; firstError ||= String(e?.message ?? e); }
    }
  }));
  sessions.push(...batch);
  out({ msg: 'connected', ok: batch.length, failed, firstError, total: sessions.length, seconds: (performance.now() - t0) / 1000,
    connectMs: batch.map((s) => Math.round(s.ms)), rss: process.memoryUsage().rss });
}

await openMany(Number(countArg));

for await (const line of createInterface({ input: process.stdin })) {
  const [command, arg] = line.trim().split(/\s+/);
  if (command === 'open') {
    await openMany(Number(arg));
  } else if (command === 'ping') {
    const p0 = performance.now();
    const results = await Promise.all(sessions.map((s, i) => new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), 5000);
      s.replied = () => { clearTimeout(timer); resolve(true); };
      s.connection.sendPacket(echo(s.assign.ipv4.address, s.assign.ipv4.gateway, i & 0xffff), 0, 36);
      s.connection.flush();
    })));
    out({ msg: 'pinged', replies: results.filter(Boolean).length, of: sessions.length, seconds: (performance.now() - p0) / 1000 });
  } else if (command === 'close') {
    const c0 = performance.now();
    for (const s of sessions) s.connection.close({ reason: 'client_closed' });
    await Promise.all(sessions.map((s) => s.connection.closed));
    out({ msg: 'closed', seconds: (performance.now() - c0) / 1000 });
    process.exit(0);
  }
}
