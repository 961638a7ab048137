/**
 * Hostile clients against a real gateway in network namespaces (real CLI, real TUN, real ping/iperf3):
 *
 *   qge-…-s   gateway 192.0.2.1 (admin API on its loopback)
 *   qge-…-c1  evil: a hand-made client (helpers/hostile-client.mjs on the compiled library) that sends forged
 *             sources, oversize and garbage datagrams, 60 KB packets, garbage control lines and a keepalive
 *             flood; later a real client that goes silent (SIGSTOP)
 *   qge-…-c2  good: the real client, pinging and running iperf3 meanwhile
 *   qge-…-c3  brute force source (wrong passwords until throttled)
 *   qge-…-c4  the right password from another address meanwhile; wrong-user vs wrong-password timing
 *
 * The whole suite runs once per transport (HTTP/2, HTTP/3), each on its own testbed.
 * Runs as root; fails (never skips) when it cannot.
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Topology } from './helpers/netns.js';
import { GatewayFiles, iperf, mbit, startClient, startTestbed, stopTestbed, TRANSPORTS, withTransports, type QuicgateProcess, type TestUser, type TunnelTransport } from './helpers/quicgate.js';

const HOSTILE = resolve(import.meta.dirname, 'helpers/hostile-client.mjs');
const ADMIN = resolve(import.meta.dirname, 'helpers/hostile-admin.mjs');
const TOKEN = 'e2e-hostile-admin-token-0123456789';
const GW4 = '198.18.0.1';
const AUTH_PER_MINUTE = 40;
// Hashes that cost time (scrypt N = 2^14, tens of ms): with the quick tests' N = 2^10 the hash is lost in a
// login's TLS and HTTP time, and skipping it for unknown users would go unnoticed by the timing test below.
const USERS: TestUser[] = [
  { name: 'evil', password: 'evil-pw', bandwidth: 'unlimited', hashLn: 14 },
  { name: 'good', password: 'good-pw', bandwidth: 'unlimited', hashLn: 14 },
  { name: 'carol', password: 'carol-pw', bandwidth: 'unlimited', hashLn: 14 },
];
const SERVER_YAML = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/16 }
  ipv6: { network: "2001:db8:1::/64" }
limits:
  idle_timeout: 4s
keepalive_interval: 1s
auth_attempts: { per_source_per_minute: ${AUTH_PER_MINUTE} }
admin: { listen: 127.0.0.1, port: 9090, token: ${TOKEN} }
history: { enabled: false }
log_level: info
`;

let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;
let good: QuicgateProcess;

interface LoginOutcome {
  readonly attempt: number;
  readonly ok: boolean;
  readonly ms: number;
  readonly status?: number;
  readonly reason?: string;
}

/** Runs the hostile client in `ns` to completion (login mode) and returns its JSON lines. */
async function logins(transport: TunnelTransport, ns: string, user: string, password: string, attempts: number): Promise<LoginOutcome[]> {
  const options = { mode: 'login', transport, url: 'https://192.0.2.1:4433/', caFile: files.caFile, user, password, attempts };
  const { stdout } = await topo.exec(ns, process.execPath, [HOSTILE, JSON.stringify(options)], 120_000);
  return stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LoginOutcome);
}

async function admin(method: string, path: string): Promise<{ status: number; body: unknown }> {
  const { stdout } = await topo.exec(topo.server, process.execPath, [ADMIN, method, `http://127.0.0.1:9090${path}`, TOKEN]);
  return JSON.parse(stdout) as { status: number; body: unknown };
}

async function drops(): Promise<Record<string, number>> {
  const { body } = await admin('GET', '/metrics');
  const out: Record<string, number> = {};
  for (const m of String(body).matchAll(/^quicgate_drops_total\{reason="(\w+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function lowerQuartile(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 4)]!;
}

// One testbed per transport, the same abuse on each.
describe.each(TRANSPORTS)('hostile clients over %s', (transport) => {
  beforeAll(async () => {
    ({ topo, files, gateway } = await startTestbed(4, USERS, withTransports(SERVER_YAML, transport)));
    good = startClient(topo, topo.clients[1]!, files.clientConfig('good', 'good', 'good-pw', { transport }), 'good');
    await good.waitForMsg('tunnel up');
  }, 90_000);

  afterAll(() => stopTestbed({ topo, files }));

  it('a client forging sources, sending oversize/garbage datagrams and flooding keepalives affects only itself', async () => {
    // The good client sends at a fixed pace well below what the tunnel carries on this machine, alone and during
    // the abuse: what is measured is whether the abuse takes the gateway from it, not how two saturating
    // processes share two busy vCPUs (an unpaced stream is CPU-bound on this machine and its share of the CPU
    // with the attacker's own process moved between 0.6 and 1.1 from run to run).
    const pace = transport === 'h3' ? '40M' : '200M';
    const alone = await iperf(topo, topo.server, topo.clients[1]!, GW4, 5300, ['-t', '3', '-b', pace]);
    const before = await drops();
    const evil = topo.spawn(topo.clients[0]!, process.execPath, [
      HOSTILE,
      JSON.stringify({ mode: 'abuse', transport, url: 'https://192.0.2.1:4433/', caFile: files.caFile, user: 'evil', password: 'evil-pw', seconds: 9, keepalivesPerTick: 200 }),
    ]);
    const events: Record<string, unknown>[] = [];
    let buffer = '';
    evil.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const l of lines.filter(Boolean)) events.push(JSON.parse(l) as Record<string, unknown>);
    });
    try {
      const assigned = await gateway.waitFor((l) => l.msg === 'session opened' && l.user === 'evil', 15_000);
      expect(assigned).toBeTruthy();
      await new Promise((r) => setTimeout(r, 1000));
      // Meanwhile the other client's traffic is unharmed.
      const [tcp, ping] = await Promise.all([
        iperf(topo, topo.server, topo.clients[1]!, GW4, 5301, ['-t', '5', '-b', pace]),
        topo.exec(topo.clients[1]!, 'ping', ['-c', '20', '-i', '0.2', '-W', '2', GW4]),
      ]);
      // The junk (~100 Mbit/s, 20,000 keepalives/s) is read, checked and dropped on the gateway's one event loop;
      // the good client keeps at least 80% of its paced rate alone.
      console.info(`[hostile] good client alone ${mbit(alone.receivedBps).toFixed(1)} Mbit/s, during abuse ${mbit(tcp.receivedBps).toFixed(1)} Mbit/s`);
      expect(mbit(tcp.receivedBps)).toBeGreaterThan(0.8 * mbit(alone.receivedBps));
      expect(ping.stdout).toMatch(/ 0% packet loss/);
      // The abuse ran to its end on an open session, and was counted.
      const deadline = Date.now() + 15_000;
      while (!events.some((e) => e.event === 'done') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      const done = events.find((e) => e.event === 'done') as { counts: Record<string, number> } | undefined;
      expect(done, JSON.stringify(events)).toBeDefined();
      expect(events.some((e) => e.event === 'closed')).toBe(false);
      await new Promise((r) => setTimeout(r, 1000));
      const after = await drops();
      const delta = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
      const counts = done!.counts;
      expect(counts.forged).toBeGreaterThan(1000);
      expect(delta('spoofed')).toBeGreaterThan(0.5 * (counts.forged ?? 0));
      expect(delta('malformed')).toBeGreaterThan(0.5 * (counts.garbageDatagrams ?? 0));
      expect(gateway.running).toBe(true);
      // Nothing was logged per bad packet (a flood must not flood the log either).
      expect(gateway.lines.filter((l) => l.level >= 50)).toEqual([]);
      expect(gateway.lines.length).toBeLessThan(200);
      // And the good client's session never dropped.
      expect(gateway.lines.some((l) => l.msg === 'session ended' && l.user === 'good')).toBe(false);
      expect(done!.counts.garbageDatagrams).toBeGreaterThan(100);
    } finally {
      evil.kill('SIGKILL');
      await gateway.waitFor((l) => l.msg === 'session ended' && l.user === 'evil', 10_000);
    }
  });

  it('throttles password brute force from one address (429 throttled, logged) while the right password works from another', async () => {
    const mark = gateway.lines.length;
    const [attack, meanwhile] = await Promise.all([
      logins(transport, topo.clients[2]!, 'carol', 'guess', AUTH_PER_MINUTE + 12),
      logins(transport, topo.clients[3]!, 'carol', 'carol-pw', 3),
    ]);
    expect(attack.every((a) => !a.ok)).toBe(true);
    const refused = attack.filter((a) => a.status === 401);
    const throttled = attack.filter((a) => a.status === 429);
    expect(refused.length).toBeLessThanOrEqual(AUTH_PER_MINUTE);
    expect(throttled.length).toBeGreaterThanOrEqual(12);
    expect(refused.length + throttled.length).toBe(attack.length);
    for (const t of throttled) expect(t.reason).toMatch(/throttled/i);
    // Once throttled, even the right password is refused from that address for the rest of the window...
    const [fromAttacker] = await logins(transport, topo.clients[2]!, 'carol', 'carol-pw', 1);
    expect(fromAttacker!.status).toBe(429);
    // ...while from another address it works, during and after the attack.
    expect(meanwhile.map((m) => m.ok)).toEqual([true, true, true]);
    const [after] = await logins(transport, topo.clients[3]!, 'carol', 'carol-pw', 1);
    expect(after!.ok).toBe(true);
    // Logged once per window (not per attempt), naming the source.
    const logged = gateway.lines.slice(mark).filter((l) => l.source === '192.0.2.13' && /too many/.test(l.msg));
    expect(logged.length).toBe(1);
    const refusedLog = gateway.lines.slice(mark).filter((l) => l.msg === 'session refused' && l.source === '192.0.2.13');
    expect(refusedLog.length).toBe(refused.length);
  });

  it('takes as long for an unknown user as for a wrong password (lower quartiles of 15 each)', async () => {
    // Interleaved in rounds so that drift hits both sides alike. Source c4 stays within its budget (4 + 30 < 40).
    // Lower quartiles: a busy machine only adds time (CI16 under load: medians 22.8 against 41.8 ms), while the
    // password hash the check must not skip for an unknown user is in every attempt's floor.
    const unknown: number[] = [];
    const wrong: number[] = [];
    for (let round = 0; round < 5; round++) {
      unknown.push(...(await logins(transport, topo.clients[3]!, 'nosuchuser', 'whatever', 3)).map((a) => (expect(a.status).toBe(401), a.ms)));
      wrong.push(...(await logins(transport, topo.clients[3]!, 'carol', 'wrong-password', 3)).map((a) => (expect(a.status).toBe(401), a.ms)));
    }
    const qu = lowerQuartile(unknown);
    const qw = lowerQuartile(wrong);
    const detail = `lower quartiles: unknown user ${qu.toFixed(1)} ms, wrong password ${qw.toFixed(1)} ms; medians ${median(unknown).toFixed(1)} / ${median(wrong).toFixed(1)} ms`;
    expect(Math.max(qu, qw) / Math.min(qu, qw), detail).toBeLessThan(1.6);
  });

  it('closes a half-open session (authenticated, then silent without closing) by the idle timeout', async () => {
    const silent = startClient(topo, topo.clients[0]!, files.clientConfig('silent', 'evil', 'evil-pw', { transport }), 'silent');
    const up = await silent.waitForMsg('tunnel up', 20_000);
    const mark = gateway.lines.length;
    silent.signal('SIGSTOP');
    const stoppedAt = Date.now();
    try {
      const ended = await gateway.waitFor((l) => l.msg === 'session ended' && l.user === 'evil', 15_000, mark);
      expect(ended.reason).toBe('idle_timeout');
      expect(Date.now() - stoppedAt).toBeLessThan(4000 + 3000);
      expect(ended.userSessionsLeft).toBe(0);
      expect(ended.userBucketLive).toBe(false);
      const { body } = await admin('GET', '/api/sessions');
      const sessions = (body as { sessions: { user: string; ipv4: string | null }[] }).sessions;
      expect(sessions.filter((s) => s.user === 'evil')).toEqual([]);
      expect(sessions.some((s) => s.user === 'good')).toBe(true);
    } finally {
      silent.signal('SIGCONT');
    }
    // Woken up, the client notices and comes back by itself; the freed address is available again.
    const clientMark = silent.lines.findIndex((l) => l === up) + 1;
    await silent.waitFor((l) => l.msg === 'tunnel up', 30_000, clientMark);
    const ping = await topo.exec(topo.clients[0]!, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GW4]);
    expect(ping.stdout).toMatch(/3 received/);
    // The gateway is healthy and the good client never noticed any of this.
    const health = await admin('GET', '/healthz');
    expect(health.status).toBe(200);
    expect(good.lines.filter((l) => l.msg === 'session closed')).toEqual([]);
  });
});
