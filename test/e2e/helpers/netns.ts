/**
 * Test topology in network namespaces made by the test itself: one hub namespace with a bridge on the underlay
 * 192.0.2.0/24, and namespaces joined to it by veth. Nothing is configured in the host's namespace: veths are
 * created directly inside the namespaces.
 *
 *   Topology.create(n)            hub = the gateway (192.0.2.1); clients 192.0.2.11, .12, ...
 *   Topology.create(n, { gateways: g })
 *                                 hub = shared services (192.0.2.250: Redis, PostgreSQL); gateways in their own
 *                                 namespaces at 192.0.2.1 .. 192.0.2.g; clients 192.0.2.11, ... (a fleet,
 *                                 test/e2e/helpers/fleet.ts)
 * destroy() kills every process started here and deletes the namespaces (and with them veths and TUNs); it
 * runs from afterAll and from process exit handlers, so a failing test leaves nothing behind.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
}

export async function sh(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<ExecResult> {
  try {
    const { stdout, stderr } = await run(cmd, args as string[], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return { stdout, stderr };
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
  }
}

/** Fails (does not skip) when the machine cannot run namespace tests. */
export async function requireNetnsSupport(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('end-to-end tests need root (network namespaces, TUN)');
  for (const tool of ['ip', 'ping', 'iperf3']) {
    await sh('sh', ['-c', `command -v ${tool}`]).catch(() => {
      throw new Error(`end-to-end tests need \`${tool}\` (apt-get install iproute2 iputils-ping iperf3)`);
    });
  }
}

const live = new Set<Topology>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const cleanup = (): void => {
    for (const topo of live) topo.destroySync();
  };
  process.once('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cleanup();
      process.exit(1);
    });
  }
}

/** The hub's underlay address when it holds the shared services of a fleet (Topology.create with gateways). */
export const SERVICES_UNDERLAY = '192.0.2.250';

export interface TopologyOptions {
  /** Gateway namespaces of their own (a fleet); 0 (default): the hub is the one gateway. */
  readonly gateways?: number;
}

export class Topology {
  /** The hub namespace (holds the bridge): the gateway, or the fleet's shared services. */
  readonly server: string;
  readonly clients: string[];
  /** A fleet's gateway namespaces (empty when the hub is the gateway). */
  readonly gateways: string[];
  readonly serverUnderlay: string;
  private readonly processes = new Set<ChildProcess>();
  private destroyed = false;

  private constructor(readonly id: string, clientCount: number, gatewayCount: number) {
    this.server = `qge-${id}-s`;
    this.clients = Array.from({ length: clientCount }, (_, i) => `qge-${id}-c${i + 1}`);
    this.gateways = Array.from({ length: gatewayCount }, (_, i) => `qge-${id}-g${i + 1}`);
    this.serverUnderlay = gatewayCount > 0 ? SERVICES_UNDERLAY : '192.0.2.1';
  }

  clientUnderlay(index: number): string {
    return `192.0.2.${11 + index}`;
  }

  /** Underlay address of a fleet's gateway `index` (0-based): 192.0.2.1, .2, ... */
  gatewayUnderlay(index: number): string {
    return `192.0.2.${1 + index}`;
  }

  static async create(clientCount: number, options: TopologyOptions = {}): Promise<Topology> {
    const id = `${process.pid.toString(36)}x${Math.floor(Math.random() * 1296).toString(36)}`;
    const gatewayCount = options.gateways ?? 0;
    if (gatewayCount > 9) throw new Error('a test fleet has at most 9 gateways (underlay 192.0.2.1-9)');
    const topo = new Topology(id, clientCount, gatewayCount);
    live.add(topo);
    installExitHook();
    try {
      await topo.build();
    } catch (err) {
      await topo.destroy();
      throw err;
    }
    return topo;
  }

  private async build(): Promise<void> {
    const s = this.server;
    await sh('ip', ['netns', 'add', s]);
    await this.exec(s, 'ip', ['link', 'set', 'lo', 'up']);
    await this.exec(s, 'ip', ['link', 'add', 'qgbr0', 'type', 'bridge']);
    await this.exec(s, 'ip', ['addr', 'add', `${this.serverUnderlay}/24`, 'dev', 'qgbr0']);
    await this.exec(s, 'ip', ['link', 'set', 'qgbr0', 'up']);
    for (const [i, g] of this.gateways.entries()) await this.attach(g, `qgg${i}`, this.gatewayUnderlay(i));
    for (const [i, c] of this.clients.entries()) await this.attach(c, `qgp${i}`, this.clientUnderlay(i));
  }

  /** A namespace of its own joined to the hub's bridge: veth `qgv0` inside it, `hubPort` on the bridge. */
  private async attach(ns: string, hubPort: string, address: string): Promise<void> {
    const s = this.server;
    await sh('ip', ['netns', 'add', ns]);
    await this.exec(ns, 'ip', ['link', 'set', 'lo', 'up']);
    await sh('ip', ['link', 'add', 'qgv0', 'netns', ns, 'type', 'veth', 'peer', 'name', hubPort, 'netns', s]);
    await this.exec(ns, 'ip', ['addr', 'add', `${address}/24`, 'dev', 'qgv0']);
    await this.exec(ns, 'ip', ['link', 'set', 'qgv0', 'up']);
    await this.exec(s, 'ip', ['link', 'set', hubPort, 'master', 'qgbr0']);
    await this.exec(s, 'ip', ['link', 'set', hubPort, 'up']);
  }

  exec(ns: string, cmd: string, args: readonly string[], timeoutMs?: number): Promise<ExecResult> {
    return sh('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs);
  }

  /**
   * Start a long-running process in a namespace; it is killed by destroy(). `options.stdin: 'pipe'` gives
   * the caller child.stdin (default: no stdin).
   */
  spawn(ns: string, cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = {}, options: { readonly stdin?: 'ignore' | 'pipe' } = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
      env: { ...process.env, ...env },
      stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
    });
    this.processes.add(child);
    child.once('exit', () => this.processes.delete(child));
    return child;
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    for (const child of this.processes) child.kill('SIGKILL');
    await Promise.all(
      [...this.processes].map((child) => new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve)))),
    );
    this.destroySync();
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const child of this.processes) child.kill('SIGKILL');
    for (const ns of [...this.clients, ...this.gateways, this.server]) {
      // Killing what is left inside first: a namespace with live processes keeps its devices.
      spawnSyncQuiet('ip', ['netns', 'pids', ns], (pids) => {
        for (const pid of pids.split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      });
      spawnSyncQuiet('ip', ['netns', 'del', ns]);
    }
  }
}

function spawnSyncQuiet(cmd: string, args: string[], onStdout?: (out: string) => void): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status === 0 && onStdout) onStdout(r.stdout);
}

/** Namespaces left by an earlier run that was killed before it could clean up. */
export async function removeStaleNamespaces(): Promise<void> {
  const { stdout } = await sh('ip', ['netns', 'list']);
  for (const line of stdout.split('\n')) {
    const name = line.split(' ')[0];
    if (name && /^qge-[0-9a-z]+x[0-9a-z]+-(s|c\d+|g\d+)$/.test(name)) {
      const pid = parseInt(name.slice(4, name.indexOf('x')), 36);
      // Only namespaces of processes that no longer exist.
      const alive = (() => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      })();
      if (!alive) spawnSyncQuiet('ip', ['netns', 'del', name]);
    }
  }
}
