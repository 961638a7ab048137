/**
 * The client does not give up silently (issue 12 §1): started while the gateway is down it keeps retrying with
 * its backoff (the process stays alive between attempts) and connects once the gateway is up; with
 * reconnect.max_attempts it stops after that many and exits 1 with a one-line reason; with a CA that does not
 * verify the gateway it stops at once and exits 2 (QG_ERR_TLS), over both transports.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureCertificates } from '../../src/transport/certs.js';
import { sleep } from './helpers/hostile-ops.js';
import { removeStaleNamespaces, requireNetnsSupport, Topology } from './helpers/netns.js';
import { GatewayFiles, TRANSPORTS, startClient, startGateway, type QuicgateProcess } from './helpers/quicgate.js';

const SERVER_YAML = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/24 }
  ipv6: null
keepalive_interval: 1s
log_level: info
`;

let topo: Topology;
let files: GatewayFiles;
let otherCaDir: string;
let gateway: QuicgateProcess | null = null;

beforeAll(async () => {
  await requireNetnsSupport();
  await removeStaleNamespaces();
  topo = await Topology.create(1);
  files = new GatewayFiles();
  await files.writeUsers([{ name: 'alice', password: 'alice-pw', bandwidth: 'unlimited' }]);
  files.writeServer(SERVER_YAML);
  // The gateway's CA exists before the gateway first runs (it reuses what its data dir holds).
  await ensureCertificates(files.dataDir, { names: ['192.0.2.1'] });
  otherCaDir = mkdtempSync(join(tmpdir(), 'qg-other-ca-'));
  await ensureCertificates(otherCaDir, { names: ['192.0.2.1'] });
}, 90_000);

afterAll(async () => {
  await topo?.destroy();
  files?.cleanup();
  if (otherCaDir) rmSync(otherCaDir, { recursive: true, force: true });
});

/** The lines the process wrote that are not JSON log lines (the one-line failure reason). */
function reasonLines(p: QuicgateProcess): string[] {
  return p.stderrText.filter((t) => !t.startsWith('{'));
}

describe('client exit', () => {
  it('with the gateway down and max_attempts 3: retries 3 times with backoff, then exits 1 with one line', async () => {
    const config = files.clientConfig('capped', 'alice', 'alice-pw', { reconnect: '{ initial: 200ms, max: 400ms, max_attempts: 3 }' });
    const client = startClient(topo, topo.clients[0]!, config, 'client-capped');
    const { code } = await client.exited;
    expect(code).toBe(1);
    expect(client.lines.filter((l) => l.msg === 'reconnecting')).toHaveLength(3);
    expect(client.lines.filter((l) => l.msg === 'connect failed')).toHaveLength(4);
    const reason = reasonLines(client);
    expect(reason).toHaveLength(1);
    expect(reason[0]).toMatch(/^quicgate: QG_ERR_CONNECT_FAILED: giving up after 3 attempts: /);
  });

  it('with the gateway down and unlimited attempts: stays alive retrying, and connects once the gateway is up', async () => {
    const config = files.clientConfig('patient', 'alice', 'alice-pw', { reconnect: '{ initial: 200ms, max: 1s }' });
    const client = startClient(topo, topo.clients[0]!, config, 'client-patient');
    try {
      await sleep(4000);
      expect(client.running).toBe(true);
      expect(client.lines.filter((l) => l.msg === 'reconnecting').length).toBeGreaterThanOrEqual(3);
      gateway = startGateway(topo, files);
      await gateway.waitReady();
      await client.waitForMsg('tunnel up', 20_000);
    } finally {
      client.signal('SIGTERM');
    }
    expect((await client.exited).code).toBe(0);
  });

  it.each(TRANSPORTS)('with a CA that does not verify the gateway (%s): exits 2 at once, QG_ERR_TLS in one line', async (transport) => {
    if (gateway === null || !gateway.running) {
      gateway = startGateway(topo, files);
      await gateway.waitReady();
    }
    const config = files.clientFile(
      `wrong-ca-${transport}`,
      `
server: https://192.0.2.1:4433/
user: alice
password: alice-pw
transport: ${transport}
ca_file: ${join(otherCaDir, 'ca.pem')}
tun_name: qgc0
reconnect: { initial: 200ms, max: 1s }
`,
    );
    const client = startClient(topo, topo.clients[0]!, config, `client-wrong-ca-${transport}`);
    const { code } = await client.exited;
    expect(code).toBe(2);
    expect(client.lines.filter((l) => l.msg === 'reconnecting')).toHaveLength(0);
    const reason = reasonLines(client);
    expect(reason).toHaveLength(1);
    expect(reason[0]).toMatch(/^quicgate: QG_ERR_TLS: server certificate refused: /);
  });
});
