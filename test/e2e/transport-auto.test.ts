/**
 * `transport: auto` (the client default): quicgate's own QUIC first; with UDP to the gateway dropped in the
 * client's namespace (nftables) the client is up on HTTP/2 within 3 s of starting its attempt; once UDP passes
 * again, its next reconnect (here: after a gateway restart) is on QUIC. Runs as root; fails (never skips).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Topology } from './helpers/netns.js';
import { startClient, startGateway, startTestbed, stopTestbed, type GatewayFiles, type QuicgateProcess, type TestUser } from './helpers/quicgate.js';

const GW4 = '198.18.0.1';
const USERS: TestUser[] = [{ name: 'dora', password: 'dora-pw', bandwidth: 'unlimited' }];
const SERVER_YAML = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/16 }
  ipv6: { network: "2001:db8:1::/64" }
keepalive_interval: 1s
log_level: info
history: { enabled: false }
`;
const TABLE = 'qg_e2e_block_udp';

let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;

beforeAll(async () => {
  ({ topo, files, gateway } = await startTestbed(1, USERS, SERVER_YAML));
}, 90_000);

afterAll(() => stopTestbed({ topo, files }));

async function blockUdp(ns: string): Promise<void> {
  await topo.exec(ns, 'nft', ['add', 'table', 'inet', TABLE]);
  await topo.exec(ns, 'nft', ['add', 'chain', 'inet', TABLE, 'out', '{ type filter hook output priority 0 ; }']);
  await topo.exec(ns, 'nft', ['add', 'rule', 'inet', TABLE, 'out', 'ip', 'daddr', '192.0.2.1', 'udp', 'dport', '4433', 'drop']);
}

describe('transport auto', () => {
  it('is on HTTP/2 within 3 s when UDP is blocked, and back on QUIC at the next reconnect once UDP passes', async () => {
    const ns = topo.clients[0]!;
    await blockUdp(ns);
    const client = startClient(topo, ns, files.clientConfig('dora', 'dora', 'dora-pw', { transport: 'auto' }), 'dora');
    try {
      const connecting = await client.waitForMsg('connecting');
      const up = await client.waitForMsg('tunnel up', 20_000);
      expect(up.transport).toBe('h2');
      const tookMs = Number(up.time) - Number(connecting.time);
      console.info(`[auto] UDP blocked: on HTTP/2 ${tookMs} ms after the attempt started`);
      expect(tookMs).toBeLessThan(3000);
      expect(client.lines.some((l) => l.msg === 'QUIC got no answer, falling back to HTTP/2')).toBe(true);
      expect((await topo.exec(ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GW4])).stdout).toMatch(/3 received/);

      // UDP passes again; the session stays where it is until the next reconnect, which tries QUIC first.
      await topo.exec(ns, 'nft', ['delete', 'table', 'inet', TABLE]);
      const mark = client.lines.length;
      gateway.signal('SIGTERM');
      await gateway.exited;
      gateway = startGateway(topo, files);
      await gateway.waitReady();
      const again = await client.waitFor((l) => l.msg === 'tunnel up', 20_000, mark);
      expect(again.transport).toBe('quic');
      expect((await topo.exec(ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GW4])).stdout).toMatch(/3 received/);
    } finally {
      client.signal('SIGTERM');
      await client.exited;
    }
  });
});
