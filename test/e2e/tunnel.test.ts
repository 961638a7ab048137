/**
 * The tunnel for real: a gateway and three clients in network namespaces made here, the real CLI, a real TUN
 * on each end, real ping and iperf3 through the tunnel; the whole suite once per transport (HTTP/2, HTTP/3). Runs as root; fails (never skips) when it cannot.
 *
 *   qge-…-s   gateway  192.0.2.1    tunnel 198.18.0.1 / 2001:db8:1::1
 *   qge-…-c1  bob (unlimited)        192.0.2.11
 *   qge-…-c2  alice #1 (20 Mbit/s)   192.0.2.12
 *   qge-…-c3  alice #2 (same user)   192.0.2.13
 */
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Topology } from './helpers/netns.js';
import { BIN, GatewayFiles, iperf, mbit, startClient, startGateway, startTestbed, stopTestbed, TRANSPORTS, withTransports, type QuicgateProcess, type TestUser, type TunnelTransport } from './helpers/quicgate.js';

const GW4 = '198.18.0.1';
const ADMIN_TOKEN = 'e2e-admin-token-0123456789';
const GW6 = '2001:db8:1::1';
const USERS: TestUser[] = [
  { name: 'alice', password: 'alice-pw', bandwidth: '20 Mbit/s', maxSessions: 2 },
  { name: 'bob', password: 'bob-pw', bandwidth: 'unlimited' },
];
const SERVER_YAML = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/16 }
  ipv6: { network: "2001:db8:1::/64" }
limits:
  max_sessions_per_user: 4
  idle_timeout: 4s
  at_limit: reject
keepalive_interval: 1s
log_level: info
admin: { listen: 127.0.0.1, port: 9090, token: e2e-admin-token-0123456789 }
history: { flush_interval: 1s }
`;

let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;
let clients: Record<string, QuicgateProcess> = {};

async function startNamedClient(transport: TunnelTransport, key: string, ns: string, user: TestUser, tun = 'qgc0', reconnect?: string): Promise<QuicgateProcess> {
  const file = files.clientConfig(key, user.name, user.password, reconnect === undefined ? { tun, transport } : { tun, reconnect, transport });
  const proc = startClient(topo, ns, file, key);
  clients[key] = proc;
  return proc;
}

// One testbed per transport, the same cases on each (HTTP/3: QUIC datagrams; HTTP/2: capsules over TLS/TCP).
describe.each(TRANSPORTS)('tunnel end to end over %s (dual stack)', (transport) => {
  beforeAll(async () => {
    clients = {};
    ({ topo, files, gateway } = await startTestbed(3, USERS, withTransports(SERVER_YAML, transport)));
    const bob = await startNamedClient(transport, 'bob', topo.clients[0]!, USERS[1]!);
    const alice1 = await startNamedClient(transport, 'alice1', topo.clients[1]!, USERS[0]!);
    await Promise.all([bob.waitForMsg('tunnel up'), alice1.waitForMsg('tunnel up')]);
  }, 90_000);

  afterAll(() => stopTestbed({ topo, files }));

  it('carries ping over IPv4 and IPv6 from two clients', async () => {
    for (const ns of [topo.clients[0]!, topo.clients[1]!]) {
      const v4 = await topo.exec(ns, 'ping', ['-c', '5', '-i', '0.2', '-W', '2', GW4]);
      expect(v4.stdout).toMatch(/5 received/);
      const v6 = await topo.exec(ns, 'ping', ['-6', '-c', '5', '-i', '0.2', '-W', '2', GW6]);
      expect(v6.stdout).toMatch(/5 received/);
    }
  });

  it("carries full-size packets with DF set at the session's MTU (v4, v6) and big UDP payloads, none lost", async () => {
    const ns = topo.clients[0]!;
    const up = clients.bob!.lines.find((l) => l.msg === 'tunnel up')!;
    const mtu = Number(up.mtu);
    const mtu4 = Number(up.ipv4Mtu);
    // HTTP/2 carries the configured 1400, and so does quicgate's QUIC (1,404-byte datagrams in 1,452-byte UDP
    // payloads). The library's HTTP/3 client datagrams carry 1209-byte packets whole: IPv4 gets that (on its
    // routes), IPv6 its minimum of 1280 (the device MTU; its bigger packets go in two fragments).
    expect([mtu, mtu4]).toEqual(transport === 'h3' ? [1280, 1209] : [1400, 1400]);
    const v4 = await topo.exec(ns, 'ping', ['-M', 'do', '-s', String(mtu4 - 28), '-c', '5', '-i', '0.2', '-W', '2', GW4]);
    expect(v4.stdout).toMatch(/5 received/);
    const v6 = await topo.exec(ns, 'ping', ['-6', '-M', 'do', '-s', String(mtu - 48), '-c', '5', '-i', '0.2', '-W', '2', GW6]);
    expect(v6.stdout).toMatch(/5 received/);
    // One byte more does not leave the client (the route's MTU), rather than being lost on the way.
    const over = await topo.exec(ns, 'ping', ['-M', 'do', '-s', String(mtu4 - 27), '-c', '1', '-W', '2', GW4]).then(
      (r) => `${r.stdout}`,
      (err: unknown) => String(err instanceof Error ? err.message : err),
    );
    expect(over).toMatch(/message too long|mtu/i);
    // UDP datagrams of the largest payload that fits the MTU, both ways, at a rate both transports carry.
    for (const reverse of [false, true]) {
      const udp = await iperf(topo, topo.server, ns, GW4, 5204, ['-u', '-b', '20M', '-l', String(mtu4 - 28), '-t', '3', ...(reverse ? ['-R'] : [])]);
      expect(mbit(udp.receivedBps), `UDP ${reverse ? 'down' : 'up'}`).toBeGreaterThan(20 * 0.9);
    }
  });

  it('lists both sessions through the admin API and the CLI, with addresses and traffic', async () => {
    const { stdout } = await topo.exec(topo.server, process.execPath, [
      BIN, 'sessions', 'list', '--json', '--admin', 'http://127.0.0.1:9090', '--token', ADMIN_TOKEN,
    ]);
    const { sessions } = JSON.parse(stdout) as { sessions: { user: string; ipv4: string; ipv6: string; transport: string; bytesIn: number }[] };
    expect(sessions.map((s) => s.user).sort()).toEqual(['alice', 'bob']);
    for (const s of sessions) {
      expect(s.ipv4).toMatch(/^198\.18\./);
      expect(s.ipv6).toMatch(/^2001:db8:1::/);
      expect(s.transport).toBe(transport);
      expect(s.bytesIn).toBeGreaterThan(0);
    }
  });

  it('carries iperf3 TCP both directions for an unlimited user', async () => {
    const up = await iperf(topo, topo.server, topo.clients[0]!, GW4, 5201, ['-t', '4']);
    const down = await iperf(topo, topo.server, topo.clients[0]!, GW4, 5201, ['-t', '4', '-R']);
    // A sanity bound: speed is bench/compare.sh's job. HTTP/3 runs the library's JS per QUIC packet and
    // carried 39 Mbit/s down once under Node 24 in CI (90-114 in compare.sh): it is held to "carries TCP".
    const floor = transport === 'h3' ? 20 : 50;
    expect(mbit(up.receivedBps)).toBeGreaterThan(floor);
    expect(mbit(down.receivedBps)).toBeGreaterThan(floor);
  });

  it('holds a 20 Mbit/s user to 20 Mbit/s ± 10% over 10 s', async () => {
    const up = await iperf(topo, topo.server, topo.clients[1]!, GW4, 5202, ['-t', '10']);
    expect(mbit(up.receivedBps)).toBeGreaterThan(18);
    expect(mbit(up.receivedBps)).toBeLessThan(22);
  });

  it('holds the same user on two connections to 20 Mbit/s in total, and leaves an unlimited user alone', async () => {
    const alice2 = await startNamedClient(transport, 'alice2', topo.clients[2]!, USERS[0]!);
    await alice2.waitForMsg('tunnel up');
    const [a1, a2, bob] = await Promise.all([
      iperf(topo, topo.server, topo.clients[1]!, GW4, 5202, ['-t', '10']),
      iperf(topo, topo.server, topo.clients[2]!, GW4, 5203, ['-t', '10']),
      iperf(topo, topo.server, topo.clients[0]!, GW4, 5201, ['-t', '10']),
    ]);
    const alice = mbit(a1.receivedBps + a2.receivedBps);
    // Never above the limit on either transport (the one shared bucket). Below it: over HTTP/3 bob's saturating
    // stream takes the gateway's CPU (the library's JS per QUIC packet), and alice's two connections got
    // 17.2-17.7 of 20 Mbit/s in 2 of some 10 runs; HTTP/2 keeps the ±10 % (issue 9: the native QUIC route).
    expect(alice).toBeGreaterThan(transport === 'h3' ? 16 : 18);
    expect(alice).toBeLessThan(22);
    // Both of alice's connections got a share of the one bucket.
    expect(mbit(a1.receivedBps)).toBeGreaterThan(2);
    expect(mbit(a2.receivedBps)).toBeGreaterThan(2);
    expect(mbit(bob.receivedBps)).toBeGreaterThan(3 * alice);
  });

  it("refuses the user's third connection at max_sessions 2 with a clear reason", async () => {
    const third = await startNamedClient(transport, 'alice3', topo.clients[0]!, USERS[0]!, 'qgc9', '{ initial: 300ms, max: 2s, max_attempts: 0 }');
    const { code } = await third.exited;
    expect(code).not.toBe(0);
    expect(third.stderrText.join('\n')).toMatch(/user_limit|QG_ERR_USER_LIMIT/);
    await gateway.waitFor((l) => l.msg === 'session refused' && l.reason === 'user_limit' && l.user === 'alice');
  });

  it("applies a changed limit to a connected user's live sessions on reload, without reconnecting", async () => {
    const opened = gateway.lines.filter((l) => l.msg === 'session opened').length;
    await files.writeUsers([{ ...USERS[0]!, bandwidth: '8 Mbit/s' }, USERS[1]!]);
    const mark = gateway.lines.length;
    gateway.signal('SIGHUP');
    const reloaded = await gateway.waitForMsg('config reloaded', 10_000, mark);
    expect(reloaded.bandwidthChanged).toEqual(['alice']);
    const up = await iperf(topo, topo.server, topo.clients[1]!, GW4, 5202, ['-t', '6']);
    expect(mbit(up.receivedBps)).toBeGreaterThan(8 * 0.9);
    expect(mbit(up.receivedBps)).toBeLessThan(8 * 1.1);
    expect(gateway.lines.filter((l) => l.msg === 'session opened').length).toBe(opened);
  });

  it('frees address, registry entry and bucket of a SIGKILLed client within the idle timeout', async () => {
    const victim = clients.alice2!;
    const mark = gateway.lines.length;
    const killedAt = Date.now();
    victim.signal('SIGKILL');
    await victim.exited;
    const ended = await gateway.waitFor((l) => l.msg === 'session ended' && l.user === 'alice', 10_000, mark);
    expect(Date.now() - killedAt).toBeLessThan(4000 + 2000);
    // alice still has her first connection: the bucket stays, the address of the killed one is free.
    expect(ended.userSessionsLeft).toBe(1);
    expect(ended.userBucketLive).toBe(true);
    expect(ended.addressesInUse).toBe(4); // bob + alice1, one IPv4 and one IPv6 each
  });

  it('never lets a packet with a forged source address reach the gateway side', async () => {
    const listener = topo.spawn(topo.server, process.execPath, [PROBE, 'listen', GW4, '9999']);
    const received: { from: string; text: string }[] = [];
    listener.stdout!.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        const parsed = JSON.parse(line) as { from?: string; text?: string };
        if (parsed.from) received.push({ from: parsed.from, text: parsed.text ?? '' });
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    const bobNs = topo.clients[0]!;
    await topo.exec(bobNs, 'ip', ['addr', 'add', '198.18.99.99/32', 'dev', 'lo']);
    await topo.exec(bobNs, process.execPath, [PROBE, 'send', '198.18.99.99', GW4, '9999', '10']);
    const bobAddress = (clients.bob!.lines.find((l) => l.msg === 'tunnel up')?.ipv4 as string) ?? '';
    await topo.exec(bobNs, process.execPath, [PROBE, 'send', bobAddress, GW4, '9999', '3']);
    await new Promise((r) => setTimeout(r, 500));
    listener.kill('SIGKILL');
    expect(received.filter((r) => r.from === '198.18.99.99')).toEqual([]);
    expect(received.filter((r) => r.from === bobAddress).length).toBe(3);
  });

  it('ends a silent session by idle timeout on the gateway, and the client detects the dead path and comes back', async () => {
    const ns = topo.clients[1]!;
    const alice1 = clients.alice1!;
    const gwMark = gateway.lines.length;
    const clientMark = alice1.lines.length;
    await topo.exec(ns, 'ip', ['link', 'set', 'qgv0', 'down']);
    const cutAt = Date.now();
    const ended = await gateway.waitFor((l) => l.msg === 'session ended' && l.user === 'alice', 15_000, gwMark);
    expect(ended.reason).toBe('idle_timeout');
    expect(Date.now() - cutAt).toBeLessThan(4000 + 3000);
    expect(ended.userSessionsLeft).toBe(0);
    expect(ended.userBucketLive).toBe(false);
    const lost = await alice1.waitFor((l) => l.msg === 'session closed', 15_000, clientMark);
    expect(lost.reason).toBe('connection_lost');
    await topo.exec(ns, 'ip', ['link', 'set', 'qgv0', 'up']);
    await alice1.waitFor((l) => l.msg === 'tunnel up', 20_000, clientMark);
    const ping = await topo.exec(ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GW4]);
    expect(ping.stdout).toMatch(/3 received/);
  });

  it('brings clients back by themselves after a gateway restart, with their addresses', async () => {
    const bobAddress = clients.bob!.lines.find((l) => l.msg === 'tunnel up')?.ipv4;
    gateway.signal('SIGTERM');
    const { code } = await gateway.exited;
    expect(code).toBe(0);
    expect(gateway.lines.some((l) => l.msg === 'session ended' && l.reason === 'server_shutdown')).toBe(true);
    const mark = clients.bob!.lines.length;
    gateway = startGateway(topo, files);
    await gateway.waitReady();
    const again = await clients.bob!.waitFor((l) => l.msg === 'tunnel up', 20_000, mark);
    expect(again.ipv4).toBe(bobAddress);
    const ping = await topo.exec(topo.clients[0]!, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GW4]);
    expect(ping.stdout).toMatch(/3 received/);
  });

  it('closes the session at once when a client stops on SIGTERM', async () => {
    const mark = gateway.lines.length;
    clients.bob!.signal('SIGTERM');
    const { code } = await clients.bob!.exited;
    expect(code).toBe(0);
    const ended = await gateway.waitFor((l) => l.msg === 'session ended' && l.user === 'bob', 3000, mark);
    expect(ended.reason).toBe('client_closed');
  });
});

const PROBE = resolve(import.meta.dirname, 'helpers/udp-probe.mjs');
