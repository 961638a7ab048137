// A flooding host for test/e2e/flood.test.ts and bench/flood.ts: real TLS clients (node:tls, node:http2) from
// a separate process. One JSON line per phase on stdout, then {"event":"done"}. Usage:
//   node flood-client.mjs '{"host":"192.0.2.1","port":4433,"caFile":"…","idle":1500,"passwords":2000,
//                           "garbage":200,"holdMs":20000,"concurrency":64}'
//   idle:      TLS connections with ALPN h2 that then send nothing, all held at once for up to holdMs;
//              reports how many completed TLS, were reset, were closed by the gateway and when
//   localAddresses: ["192.0.2.100", …] the idle connections' source addresses, round robin (a flood from
//              many sources; the addresses must be on the namespace's interface); default: the route's own
//   passwords: HTTP/2 CONNECT requests with a wrong password, each on its own connection (as a guesser
//              would), `concurrency` at a time; reports the answers by status (or "reset" when refused at accept)
//   garbage:   TLS connections that send 4 KiB of random bytes after the handshake
//   repeatForMs: repeat the phases (together) until this long has passed; "done" tells the rounds
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';

const opts = JSON.parse(process.argv[2] ?? '{}');
const ca = readFileSync(opts.caFile, 'utf8');
const out = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const tlsOptions = { host: opts.host, port: opts.port, ca, ...(opts.servername ? { servername: opts.servername } : {}) };

async function pool(n, concurrency, job) {
  let next = 0;
  const workers = Array.from({ length: Math.min(n, concurrency) }, async () => {
    while (next < n) await job(next++);
  });
  await Promise.all(workers);
}

async function idle(n, holdMs) {
  const started = Date.now();
  const result = { event: 'idle', attempted: n, tls: 0, resetBeforeTls: 0, closedByGateway: 0, stillOpen: 0, lastCloseMs: 0 };
  const sockets = [];
  const closedAll = [];
  const sources = opts.localAddresses ?? [];
  await pool(n, opts.concurrency ?? 64, (i) =>
    new Promise((resolve) => {
      const local = sources.length > 0 ? { localAddress: sources[i % sources.length] } : {};
      const s = tlsConnect({ ...tlsOptions, ...local, ALPNProtocols: ['h2'] });
      let secure = false;
      let ours = false;
      sockets.push({ s, mine: () => (ours = true) });
      s.on('secureConnect', () => {
        secure = true;
        result.tls++;
        resolve();
      });
      s.on('error', () => {});
      s.resume(); // read the gateway's SETTINGS (and so see its FIN), answer nothing
      closedAll.push(
        new Promise((done) =>
          s.once('close', () => {
            if (!secure) {
              result.resetBeforeTls++;
              resolve();
            } else if (!ours) {
              result.closedByGateway++;
              result.lastCloseMs = Math.max(result.lastCloseMs, Date.now() - started);
            }
            done();
          }),
        ),
      );
    }),
  );
  const deadline = started + holdMs;
  while (Date.now() < deadline && sockets.some(({ s }) => !s.destroyed)) await new Promise((r) => setTimeout(r, 100));
  for (const { s, mine } of sockets) {
    if (!s.destroyed) {
      result.stillOpen++;
      mine();
      s.destroy();
    }
  }
  await Promise.all(closedAll);
  result.ms = Date.now() - started;
  return result;
}

function oneGuess(i) {
  return new Promise((resolve) => {
    const session = h2connect(`https://${opts.host}:${opts.port}`, { ca, ...(opts.servername ? { servername: opts.servername } : {}) });
    let answered = false;
    const finish = (answer) => {
      if (answered) return;
      answered = true;
      session.destroy();
      resolve(answer);
    };
    session.on('error', () => finish('reset'));
    session.once('remoteSettings', () => {
      const basic = Buffer.from(`user${i % 7}:wrong-${i}`).toString('base64');
      let req;
      try {
        req = session.request({ ':method': 'CONNECT', ':protocol': 'webtransport', ':scheme': 'https', ':authority': opts.host, ':path': '/quicgate', authorization: `Basic ${basic}`, 'x-quicgate-version': 'flood' });
      } catch {
        finish('reset'); // the session was closed under us (e.g. a GOAWAY raced the SETTINGS)
        return;
      }
      req.on('error', () => finish('reset'));
      req.once('response', (headers) => finish(String(headers[':status'])));
    });
    setTimeout(() => finish('timeout'), 15_000).unref();
  });
}

async function passwords(n) {
  const started = Date.now();
  const answers = {};
  await pool(n, opts.concurrency ?? 64, async (i) => {
    const a = await oneGuess(i);
    answers[a] = (answers[a] ?? 0) + 1;
  });
  return { event: 'passwords', attempted: n, answers, ms: Date.now() - started };
}

async function garbage(n) {
  const started = Date.now();
  const result = { event: 'garbage', attempted: n, closedByGateway: 0, resetBeforeTls: 0 };
  await pool(n, opts.concurrency ?? 64, () =>
    new Promise((resolve) => {
      const s = tlsConnect({ ...tlsOptions, ALPNProtocols: [n % 2 ? 'h2' : 'http/1.1'] });
      let secure = false;
      s.on('secureConnect', () => {
        secure = true;
        s.write(randomBytes(4096));
      });
      s.on('error', () => {});
      s.resume();
      s.once('close', () => {
        if (secure) result.closedByGateway++;
        else result.resetBeforeTls++;
        resolve();
      });
      setTimeout(() => s.destroy(), 15_000).unref();
    }),
  );
  result.ms = Date.now() - started;
  return result;
}

// repeatForMs: run the whole set again and again until that much time has passed (floods in a row).
const until = Date.now() + (opts.repeatForMs ?? 0);
let rounds = 0;
do {
  const phases = [];
  if (opts.idle) phases.push(idle(opts.idle, opts.holdMs ?? 20_000).then(out));
  if (opts.passwords) phases.push(passwords(opts.passwords).then(out));
  if (opts.garbage) phases.push(garbage(opts.garbage).then(out));
  await Promise.all(phases);
  rounds++;
} while (Date.now() < until);
out({ event: 'done', rounds });
process.exit(0);
