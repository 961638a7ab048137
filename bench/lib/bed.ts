/**
 * The process setup bench/limits.ts and bench/fairness.ts share: one gateway namespace and three client
 * namespaces (alice#1, alice#2, bob), alice limited (maxSessions 2) and bob at BOB_MBIT, the gateway started
 * on a server file of the bench's, iperf3 servers on the gateway's tunnel address, clients per transport, live
 * reloads by SIGHUP, PASS/MISS counting, and cleanup on every way out (the end, a failure, the watchdog,
 * SIGINT/SIGTERM).
 *
 * Profiling: GW_NODE_ARGS / CLIENT_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/qg-prof") are handed to the
 * gateway's / clients' node; a client is stopped by SIGTERM per transport and the gateway at the end, so each
 * writes its profile (bench/cpuprofile-top.mjs reads them). CLIENT_SEND=fifo starts the clients with
 * QUICGATE_CLIENT_SEND_FIFO=1 (no fair queue on the client's send side: the A/B of src/client/fair-send-queue.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { removeStaleNamespaces, requireNetnsSupport, Topology } from '../../test/e2e/helpers/netns.js';
import { BIN, GatewayFiles, QuicgateProcess, startGateway, stopTestbed, withTransports, type ClientTransport, type TunnelTransport } from '../../test/e2e/helpers/quicgate.js';

/** The gateway's tunnel address (tunnel 198.18.0.0/15; the underlay 192.0.2.0/24 is the e2e Topology's). */
export const GW4 = '198.18.0.1';

export interface BenchBed {
  readonly topo: Topology;
  readonly files: GatewayFiles;
  readonly gateway: QuicgateProcess;
  readonly nsA1: string;
  readonly nsA2: string;
  readonly nsB: string;
  /** alice's limit (Mbit/s) into the users file (bob stays at BOB_MBIT); takes effect with reload(). */
  setAlice(aliceMbit: number): Promise<void>;
  /** The server file: `yaml` (listen, tunnel, history off, the transports' listeners are added); takes effect with reload(). */
  setServer(yaml: string): void;
  /** SIGHUP, wait for the gateway's "config reloaded", then 300 ms for the sessions to take it. */
  reload(): Promise<void>;
  /**
   * alice#1, alice#2 and bob connected over `transport`, each "tunnel up": the clients of another transport are
   * stopped first (stopClients). Resolves true when it (re)started them, false when they were on it already.
   */
  useTransport(transport: ClientTransport): Promise<boolean>;
  /** The transport the clients are on (undefined before useTransport and after stopClients). */
  readonly transport: ClientTransport | undefined;
  /** alice#1's IPv4 tunnel MTU on that transport (from its "tunnel up"; NaN before useTransport). */
  readonly mtu: number;
  /** SIGTERM to the clients and wait until they exited (their profiles written); prints their send-side drops. */
  stopClients(): Promise<void>;
  /** The gateway's drop counters by reason (quicgate_drops_total, from the admin API's /metrics). */
  drops(): Promise<Record<string, number>>;
}

/** Admin token of the bench gateway (the admin API listens on 127.0.0.1 inside the gateway's namespace only). */
const ADMIN_TOKEN = 'bench-admin-token-0123456789';

/** Drops since `before`, as "reason n" for the reasons that moved ("none" when none did). */
export function dropDelta(before: Record<string, number>, after: Record<string, number>): string {
  const moved = Object.keys(after)
    .map((reason) => [reason, (after[reason] ?? 0) - (before[reason] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${n}`);
  return moved.length === 0 ? 'none' : moved.join(', ');
}

function nodeArgs(name: string): string[] {
  return (process.env[name] ?? '').split(/\s+/).filter(Boolean);
}

/** Counts missed goals over a bench run, in all and per label (a transport). */
export class Verdicts {
  misses = 0;
  private readonly byLabel = new Map<string, { goals: number; misses: number }>();
  verdict(ok: boolean, label?: string): string {
    if (!ok) this.misses++;
    if (label !== undefined) {
      const counts = this.byLabel.get(label) ?? { goals: 0, misses: 0 };
      counts.goals++;
      if (!ok) counts.misses++;
      this.byLabel.set(label, counts);
    }
    return ok ? 'PASS' : 'MISS';
  }
  summary(t0: number): string {
    const labels = [...this.byLabel].map(([label, c]) => `${label} ${c.misses} of ${c.goals}`);
    const per = labels.length === 0 ? '' : ` (missed per transport: ${labels.join(', ')})`;
    return `# ${this.misses === 0 ? 'all goals met' : `${this.misses} goal(s) missed`}${per}; ${((Date.now() - t0) / 1000).toFixed(0)} s`;
  }
}

/**
 * Runs `body` on a fresh bed (root only; exits 2 otherwise), with a watchdog of `maxTimeS`, iperf3 servers on
 * GW4 at `iperfPorts`, and cleanup however it ends. `name` prefixes the bench's error lines.
 */
export function runBench(
  name: string,
  options: {
    readonly maxTimeS: number;
    readonly bobMbit: number;
    readonly firstAliceMbit: number;
    readonly serverYaml: string;
    readonly iperfPorts: readonly number[];
    /** The transports the clients will use (the gateway serves quic and h2 by default; h3 turns quic off). */
    readonly transports: readonly TunnelTransport[];
  },
  body: (bed: BenchBed) => Promise<void>,
): void {
  if (process.getuid?.() !== 0) {
    console.error(`${name}: run as root (namespaces, TUN)`);
    process.exit(2);
  }
  // Installed before the Topology's own hooks, so these run first; destroySync() and cleanup() are idempotent.
  let topo: Topology | undefined;
  let files: GatewayFiles | undefined;
  process.once('exit', () => {
    topo?.destroySync();
    files?.cleanup();
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  const watchdog = setTimeout(() => {
    console.error(`${name}: watchdog: MAX_TIME=${options.maxTimeS}s reached`);
    process.exit(3);
  }, options.maxTimeS * 1000);
  watchdog.unref();

  const main = async (): Promise<void> => {
    await requireNetnsSupport();
    await removeStaleNamespaces();
    files = new GatewayFiles();
    topo = await Topology.create(3);
    const t = topo;
    const f = files;
    const [nsA1, nsA2, nsB] = t.clients as [string, string, string];
    const setAlice = (aliceMbit: number): Promise<void> =>
      f.writeUsers([
        { name: 'alice', password: 'alice-pw', bandwidth: `${aliceMbit} Mbit/s`, maxSessions: 2 },
        { name: 'bob', password: 'bob-pw', bandwidth: `${options.bobMbit} Mbit/s` },
      ]);
    const listeners = (yaml: string): string => (options.transports.includes('h3') ? withTransports(yaml, 'h3') : yaml);
    const setServer = (yaml: string): void =>
      f.writeServer(listeners(`listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/15, gateway: ${GW4} }
  ipv6: null
log_level: info
history: { enabled: false }
admin: { token: ${ADMIN_TOKEN} }
${yaml.trim()}`));
    await setAlice(options.firstAliceMbit);
    setServer(options.serverYaml);
    const gw = startGateway(t, f, { nodeArgs: nodeArgs('GW_NODE_ARGS') });
    await gw.waitForMsg('gateway up');
    let iperfServers: ReturnType<typeof t.spawn>[] = [];
    const startIperfServers = async (): Promise<void> => {
      const old = iperfServers;
      for (const server of old) server.kill('SIGKILL');
      await Promise.all(old.map((server) => (server.exitCode === null && server.signalCode === null ? new Promise((r) => server.once('exit', r)) : null)));
      iperfServers = options.iperfPorts.map((port) => {
        const server = t.spawn(t.server, 'iperf3', ['-s', '-J', '-B', GW4, '-p', String(port)]);
        // Its JSON report per test goes nowhere, but must be read: a full pipe would stall the server.
        server.stdout!.resume();
        server.stderr!.resume();
        return server;
      });
      await sleep(300);
    };
    await startIperfServers();
    let running: QuicgateProcess[] = [];
    const bed: { -readonly [K in keyof BenchBed]: BenchBed[K] } = {
      topo: t,
      files: f,
      gateway: gw,
      nsA1,
      nsA2,
      nsB,
      setAlice,
      setServer,
      async reload() {
        const mark = gw.lines.length;
        gw.signal('SIGHUP');
        await gw.waitForMsg('config reloaded', 10_000, mark);
        await sleep(300);
      },
      transport: undefined,
      mtu: NaN,
      async useTransport(transport) {
        if (this.transport === transport) return false;
        await this.stopClients();
        // Fresh iperf3 servers: a test whose last control bytes were cut with the old tunnels leaves its server
        // "busy running a test" for good (fairness.ts: every later test on that port failed).
        await startIperfServers();
        const clients = ([
          [nsA1, 'alice', 'alice1'],
          [nsA2, 'alice', 'alice2'],
          [nsB, 'bob', 'bob'],
        ] as const).map(([ns, user, label]) => {
          const config = f.clientConfig(`${label}-${transport}`, user, `${user}-pw`, { transport });
          const env = process.env.CLIENT_SEND === 'fifo' ? { QUICGATE_CLIENT_SEND_FIFO: '1' } : {};
          return new QuicgateProcess(t.spawn(ns, process.execPath, [...nodeArgs('CLIENT_NODE_ARGS'), BIN, 'client', '--config', config], env), `${label}/${transport}`);
        });
        running = clients;
        this.transport = transport;
        const [up] = await Promise.all(clients.map((c) => c.waitForMsg('tunnel up')));
        this.mtu = Number((up as unknown as { ipv4Mtu?: number }).ipv4Mtu);
        await sleep(500);
        return true;
      },
      async drops() {
        const text = (await t.exec(t.server, 'curl', ['-s', '-H', `Authorization: Bearer ${ADMIN_TOKEN}`, 'http://127.0.0.1:9090/metrics'])).stdout;
        const out: Record<string, number> = {};
        for (const m of text.matchAll(/^quicgate_drops_total\{reason="([a-z_]+)"\} ([0-9.e+]+)$/gm)) out[m[1]!] = Number(m[2]);
        return out;
      },
      async stopClients() {
        const clients = running;
        running = [];
        this.transport = undefined;
        if (clients.length === 0) return;
        for (const c of clients) c.signal('SIGTERM');
        await Promise.all(clients.map((c) => c.exited));
        for (const c of clients) {
          const down = c.lines.findLast((l) => l.msg === 'tunnel down');
          if (down === undefined) continue;
          const { packetsSent, dropsQueueFull, transportQueueDrops } = down as unknown as Record<string, number>;
          console.log(`#   ${c.label}: packets sent ${packetsSent}, dropped on its send side ${dropsQueueFull} (the transport's queue full: ${transportQueueDrops})`);
        }
        await sleep(500);
      },
    };
    await body(bed);
    await bed.stopClients();
    // The gateway ends by SIGTERM before the namespaces go, so a --cpu-prof profile is written.
    gw.signal('SIGTERM');
    await Promise.race([gw.exited, sleep(5000)]);
  };
  main()
    .catch((err: unknown) => {
      console.error(`${name} failed:`, err);
      process.exitCode = 1;
    })
    .finally(async () => {
      await stopTestbed({ topo, files });
      process.exit();
    });
}
