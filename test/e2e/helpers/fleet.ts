/**
 * A fleet of real gateways for end-to-end tests: N quicgate processes, each in its own namespace with its own TUN,
 * data dir and config, all with `fleet:` pointing at one real redis-server, and clients that can reach every
 * gateway. Built on Topology (netns.ts, `gateways` option), so everything goes with topo.destroy().
 *
 *   qge-…-s    shared services  192.0.2.250   redis-server :6379
 *   (host)     PostgreSQL       with `postgres: true`: one server, database `quicgate`, every gateway's
 *                               history.backend; reached through its unix socket (the file system is shared
 *                               across namespaces), so it needs no underlay address
 *   qge-…-g1   gateway gw1      192.0.2.1:4433 tunnel 198.18.1.1/24, 2001:db8:1::1/64, admin 127.0.0.1:9090
 *   qge-…-g2   gateway gw2      192.0.2.2:4433 tunnel 198.18.2.1/24, 2001:db8:2::1/64
 *   qge-…-gN   ...
 *   qge-…-c1.. clients          192.0.2.11, .12, ...  (one bridge in the services namespace joins everyone)
 *
 * Tunnel address pools (`pools`):
 *   'disjoint' (default)  every gateway has its own range (gateway i: 198.18.i.0/24, 2001:db8:i::/64), so no
 *                         address can be handed out twice whatever the gateways do, and each gateway's tunnel
 *                         address (198.18.i.1) names it; for tests of the rate, caps, quotas and kills.
 *   'shared'              every gateway serves the same range (198.18.0.0/16, 2001:db8:1::/64, gateway
 *                         198.18.0.1 in each namespace), for tests of fleet-wide unique allocation and sticky or
 *                         static addresses through another gateway. Clients still reach each gateway's own
 *                         198.18.0.1 through their own tunnel (each gateway is its own namespace).
 *
 * Each gateway generates its own CA in its own data dir; a client config for gateway i trusts that CA and names
 * that gateway's URL (the fleet's "one name" is the operator's load balancer or DNS, not part of these tests).
 * Cleanup: stop() (afterAll) kills every process, removes the namespaces (their veths and TUNs go with them),
 * the redis directory and every gateway's files; Topology's exit hook covers a run that dies before afterAll.
 */
import { SERVICES_UNDERLAY, removeStaleNamespaces, requireNetnsSupport, sh, Topology } from './netns.js';
import { adminRequest, type AdminAnswer } from './hostile-ops.js';
import { GatewayFiles, iperf, startClient, startGateway, type ClientTransport, type IperfResult, type QuicgateProcess, type TestUser } from './quicgate.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres-server.js';
import { startTestRedis, type TestRedis } from '../../support/redis-server.js';

export const FLEET_REDIS_PORT = 6379;
export const FLEET_REDIS_URL = `redis://${SERVICES_UNDERLAY}:${FLEET_REDIS_PORT}/0`;
export const FLEET_ADMIN_TOKEN = 'e2e-fleet-admin-token-0123456789';
export const FLEET_ADMIN_PORT = 9090;
export const FLEET_TUNNEL_PORT = 4433;

export type PoolLayout = 'disjoint' | 'shared';

export interface FleetOptions {
  readonly gateways: number;
  readonly clients: number;
  readonly users: readonly TestUser[];
  /** Extra top-level server YAML for every gateway (not listen/tunnel/admin/fleet), or per gateway index. */
  readonly serverYaml?: string | ((index: number) => string);
  /** Extra keys inside `fleet:` for every gateway (one per line, e.g. "lease_interval: 100ms"). */
  readonly fleetYaml?: string;
  readonly pools?: PoolLayout;
  /** Start every gateway and wait for "gateway up" (default true); false: call startGateway(i) yourself. */
  readonly start?: boolean;
  readonly gatewayEnv?: NodeJS.ProcessEnv;
  /** One real PostgreSQL for the fleet's history (history.backend: postgres on every gateway); default false. */
  readonly postgres?: boolean;
}

export interface FleetGateway {
  readonly index: number;
  /** fleet.gateway_id: gw1, gw2, ... */
  readonly id: string;
  readonly ns: string;
  readonly underlay: string;
  /** https://192.0.2.i:4433/ */
  readonly url: string;
  /** The gateway's own tunnel addresses (iperf3 servers bind here). */
  readonly tunnel4: string;
  readonly tunnel6: string;
  readonly files: GatewayFiles;
  /** The running quicgate, null before startGateway or after stopGateway. */
  process: QuicgateProcess | null;
}

export interface FleetClientOptions {
  readonly tun?: string;
  readonly transport?: ClientTransport;
  readonly reconnect?: string;
}

function indent(yaml: string, spaces: number): string {
  return yaml
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => ' '.repeat(spaces) + l.trim())
    .join('\n');
}

export class Fleet {
  readonly gateways: FleetGateway[];

  private constructor(
    readonly topo: Topology,
    readonly redis: TestRedis,
    /** The fleet's history server (Fleet.start with `postgres: true`), else null. */
    readonly postgres: TestPostgres | null,
    private readonly postgresUrl: string | null,
    private readonly options: FleetOptions,
  ) {
    const shared = (options.pools ?? 'disjoint') === 'shared';
    this.gateways = topo.gateways.map((ns, index) => {
      const n = index + 1;
      const underlay = topo.gatewayUnderlay(index);
      return {
        index,
        id: `gw${n}`,
        ns,
        underlay,
        url: `https://${underlay}:${FLEET_TUNNEL_PORT}/`,
        tunnel4: shared ? '198.18.0.1' : `198.18.${n}.1`,
        tunnel6: shared ? '2001:db8:1::1' : `2001:db8:${n}::1`,
        files: new GatewayFiles(),
        process: null,
      };
    });
  }

  /** Build the namespaces, start redis-server in the services namespace, write every config, start the gateways. */
  static async start(options: FleetOptions): Promise<Fleet> {
    await requireNetnsSupport();
    await sh('sh', ['-c', 'command -v redis-server']).catch(() => {
      throw new Error('fleet end-to-end tests need `redis-server` (apt-get install redis-server; scripts/test.sh does)');
    });
    await removeStaleNamespaces();
    const topo = await Topology.create(options.clients, { gateways: options.gateways });
    let redis: TestRedis;
    try {
      redis = await startTestRedis({
        bind: SERVICES_UNDERLAY,
        port: FLEET_REDIS_PORT,
        spawn: (cmd, args) => topo.spawn(topo.server, cmd, args),
      });
    } catch (err) {
      await topo.destroy();
      throw err;
    }
    let postgres: TestPostgres | null = null;
    let postgresUrl: string | null = null;
    if (options.postgres === true) {
      try {
        postgres = await startTestPostgres();
        await postgres.createDatabase('quicgate');
        postgresUrl = postgres.socketUrl('quicgate');
      } catch (err) {
        await postgres?.dispose();
        await redis.dispose().catch(() => undefined);
        await topo.destroy();
        throw err;
      }
    }
    const fleet = new Fleet(topo, redis, postgres, postgresUrl, options);
    try {
      for (const gw of fleet.gateways) {
        await gw.files.writeUsers(options.users);
        gw.files.writeServer(fleet.serverYaml(gw));
      }
      if (options.start ?? true) await Promise.all(fleet.gateways.map((gw) => fleet.startGateway(gw.index)));
    } catch (err) {
      await fleet.stop();
      throw err;
    }
    return fleet;
  }

  private serverYaml(gw: FleetGateway): string {
    const n = gw.index + 1;
    const shared = (this.options.pools ?? 'disjoint') === 'shared';
    const extra = typeof this.options.serverYaml === 'function' ? this.options.serverYaml(gw.index) : (this.options.serverYaml ?? '');
    return `
listen: { address: ${gw.underlay}, port: ${FLEET_TUNNEL_PORT} }
tunnel:
  ipv4: { network: ${shared ? '198.18.0.0/16' : `198.18.${n}.0/24`} }
  ipv6: { network: "${shared ? '2001:db8:1::/64' : `2001:db8:${n}::/64`}" }
admin: { listen: 127.0.0.1, port: ${FLEET_ADMIN_PORT}, token: ${FLEET_ADMIN_TOKEN} }
fleet:
  gateway_id: ${gw.id}
  redis_url: ${FLEET_REDIS_URL}
${this.options.fleetYaml === undefined ? '' : indent(this.options.fleetYaml, 2)}
${this.postgresUrl === null ? '' : `history:\n  backend: postgres\n  flush_interval: 500ms\n  postgres: { url: "${this.postgresUrl}" }`}
${extra.includes('keepalive_interval') ? '' : 'keepalive_interval: 1s'}
${extra.includes('log_level') ? '' : 'log_level: info'}
${extra.trim()}
`;
  }

  gateway(index: number): FleetGateway {
    const gw = this.gateways[index];
    if (gw === undefined) throw new Error(`fleet has no gateway ${index}`);
    return gw;
  }

  /** Start gateway `index` (again) and wait until it is fully started (admin API too). */
  async startGateway(index: number): Promise<QuicgateProcess> {
    const gw = this.gateway(index);
    if (gw.process?.running) throw new Error(`${gw.id} is already running`);
    const proc = startGateway(this.topo, gw.files, { ns: gw.ns, label: gw.id, ...(this.options.gatewayEnv === undefined ? {} : { env: this.options.gatewayEnv }) });
    gw.process = proc;
    await proc.waitReady();
    return proc;
  }

  /** Stop gateway `index` with `signal` (SIGKILL: a crash) and wait for it to exit. */
  async stopGateway(index: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const gw = this.gateway(index);
    const proc = gw.process;
    if (proc === null) return;
    gw.process = null;
    if (proc.running) proc.signal(signal);
    await proc.exited;
  }

  /** The running process of gateway `index` (throws when it is not running). */
  proc(index: number): QuicgateProcess {
    const proc = this.gateway(index).process;
    if (proc === null) throw new Error(`${this.gateway(index).id} is not running`);
    return proc;
  }

  /** A client config file for gateway `index` (its URL and CA). */
  clientConfig(index: number, key: string, user: TestUser, options: FleetClientOptions = {}): string {
    const gw = this.gateway(index);
    return gw.files.clientConfig(key, user.name, user.password, { ...options, server: gw.url });
  }

  /** Start a client in client namespace `clientIndex` connecting to gateway `index`. */
  startClient(index: number, clientIndex: number, key: string, user: TestUser, options: FleetClientOptions = {}): QuicgateProcess {
    const ns = this.topo.clients[clientIndex];
    if (ns === undefined) throw new Error(`fleet has no client namespace ${clientIndex}`);
    return startClient(this.topo, ns, this.clientConfig(index, key, user, options), key);
  }

  /** Admin API of gateway `index`, from inside its namespace. */
  admin(index: number, method: string, path: string): Promise<AdminAnswer> {
    return adminRequest(this.topo, FLEET_ADMIN_TOKEN, method, path, FLEET_ADMIN_PORT, this.gateway(index).ns);
  }

  /** Prometheus text of gateway `index`. */
  async metrics(index: number): Promise<string> {
    const answer = await this.admin(index, 'GET', '/metrics');
    if (answer.status !== 200 || typeof answer.body !== 'string') throw new Error(`${this.gateway(index).id} /metrics answered ${answer.status}`);
    return answer.body;
  }

  /**
   * A user's tunnel bytes (both ways: what their bucket charges) on every gateway in `which`, from /api/overview,
   * each stamped by the gateway itself: a request from a namespace costs a node start-up, up to seconds on a
   * busy machine, so the caller's clock would blur a rate. ratesMbit() turns two samples into rates.
   */
  async sampleUser(user: string, which: readonly number[] = this.gateways.map((g) => g.index)): Promise<UserSample> {
    const answers = await Promise.all(which.map((i) => this.admin(i, 'GET', '/api/overview')));
    const views = answers.map((a, k) => {
      if (a.status !== 200) throw new Error(`${this.gateway(which[k]!).id} /api/overview answered ${a.status}`);
      return a.body as { at: string; sessions: { user: string; bytesIn: number; bytesOut: number }[] };
    });
    return {
      at: views.map((v) => Date.parse(v.at)),
      bytes: views.map((v) => v.sessions.filter((s) => s.user === user).reduce((sum, s) => sum + s.bytesIn + s.bytesOut, 0)),
    };
  }

  /**
   * iperf3 -R (gateway i to client namespace i, measured by the receiving client) through gateways `which` at
   * once, four TCP streams each: one stream's sawtooth under a shaper (and a busy CPU's stalls) measures TCP,
   * not the limit; four keep each gateway's bucket busy, as a browser or a sync client does.
   */
  iperfFromGateways(which: readonly number[], seconds: number): Promise<IperfResult[]> {
    return Promise.all(which.map((i) => this.iperf(i, i, 5201, ['-R', '-P', '4', '-t', String(seconds), '-i', '0.5'])));
  }

  /**
   * `user`'s rate through gateways `which` at once (client namespace i on gateway i, iperfFromGateways for
   * `seconds`), read from the gateways' own counters from 3 s in (shares settled, slow start over) to 3 s
   * before the end: Mbit/s per gateway and in total (IP bytes both ways, what the bucket charges), and goodput.
   */
  async measureRate(user: string, which: readonly number[], seconds: number): Promise<RateMeasurement> {
    const start = Date.now();
    const traffic = this.iperfFromGateways(which, seconds);
    await new Promise((r) => setTimeout(r, 3_400));
    const first = await this.sampleUser(user, which);
    await new Promise((r) => setTimeout(r, Math.max(0, (seconds - 3) * 1000 - (Date.now() - start))));
    const last = await this.sampleUser(user, which);
    const runs = await traffic;
    const wire = ratesMbit(first, last);
    return { wire, total: wire.reduce((a, b) => a + b, 0), goodput: runs.map((r) => r.receivedBps / 1e6) };
  }

  /** Rewrite the users file of the given gateways (default all); reload(i) applies it live. */
  async writeUsers(users: readonly TestUser[], indexes: readonly number[] = this.gateways.map((g) => g.index)): Promise<void> {
    for (const i of indexes) await this.gateway(i).files.writeUsers(users);
  }

  /** SIGHUP: gateway `index` re-reads config and users; resolves on its "config reloaded" line. */
  async reload(index: number): Promise<void> {
    const proc = this.proc(index);
    const from = proc.lines.length;
    proc.signal('SIGHUP');
    await proc.waitFor((l) => l.msg === 'config reloaded', 10_000, from);
  }

  /** iperf3 from client namespace `clientIndex` through its tunnel to gateway `index` (server bound to its tunnel4). */
  iperf(index: number, clientIndex: number, port: number, args: readonly string[]): Promise<IperfResult> {
    const gw = this.gateway(index);
    return iperf(this.topo, gw.ns, this.topo.clients[clientIndex]!, gw.tunnel4, port, args);
  }

  /** Kill everything, remove namespaces, the redis and PostgreSQL directories and all files (afterAll; idempotent). */
  async stop(): Promise<void> {
    await this.redis.dispose().catch(() => undefined);
    await this.topo.destroy();
    await this.postgres?.dispose().catch(() => undefined);
    for (const gw of this.gateways) gw.files.cleanup();
  }
}

/** Per gateway: the gateway's own clock (ms) when it counted, and the user's bytes both ways. */
export interface UserSample {
  readonly at: readonly number[];
  readonly bytes: readonly number[];
}

export interface RateMeasurement {
  /** Mbit/s per gateway (IP bytes both ways) and their sum. */
  readonly wire: readonly number[];
  readonly total: number;
  /** iperf3's goodput per gateway, Mbit/s (TCP payload: some 4 % below the IP bytes, ACKs not counted). */
  readonly goodput: readonly number[];
}

/** Mbit/s per gateway between two samples of the same gateways (sessions must live through both). */
export function ratesMbit(a: UserSample, b: UserSample): number[] {
  return a.bytes.map((x, k) => (((b.bytes[k] ?? 0) - x) * 8) / ((b.at[k]! - a.at[k]!) / 1000) / 1e6);
}

/** afterAll helper: safe when Fleet.start failed (nothing to stop). */
export async function stopFleet(fleet: Fleet | undefined): Promise<void> {
  await fleet?.stop();
}
