/**
 * Running the real `quicgate` CLI (compiled, bin/quicgate.js) inside test namespaces, and reading its JSON
 * log lines to know when it is up, what it did, and why it stopped.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { hashPassword } from '../../../src/config/password.js';
import { removeStaleNamespaces, requireNetnsSupport, Topology } from './netns.js';

export const BIN = resolve(import.meta.dirname, '../../../bin/quicgate.js');
/** Where the test gateway listens: its underlay address in the gateway namespace (Topology). */
export const GATEWAY_URL = 'https://192.0.2.1:4433/';

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

/** A started quicgate process with its parsed log. */
export class QuicgateProcess {
  readonly lines: LogLine[] = [];
  readonly stderrText: string[] = [];
  private readonly waiters = new Set<() => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcess, readonly label: string) {
    let buffer = '';
    const onData = (chunk: Buffer): void => {
      buffer += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const text = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        this.stderrText.push(text);
        if (process.env.QG_E2E_VERBOSE) process.stderr.write(`[${label}] ${text}\n`);
        try {
          const parsed = JSON.parse(text) as LogLine;
          if (typeof parsed.msg === 'string') this.lines.push(parsed);
        } catch {
          /* not a log line (e.g. the one-line failure reason) */
        }
        for (const w of this.waiters) w();
      }
    };
    child.stderr?.on('data', onData);
    child.stdout?.on('data', onData);
    this.exited = new Promise((resolveExit) => {
      child.once('exit', (code, signal) => {
        for (const w of this.waiters) w();
        resolveExit({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first log line (at or after index `from`) that matches; rejects on timeout or exit. */
  waitFor(match: (line: LogLine) => boolean, timeoutMs = 20_000, from = 0): Promise<LogLine> {
    return new Promise((resolveLine, reject) => {
      const check = (): boolean => {
        const hit = this.lines.slice(from).find(match);
        if (hit) {
          done();
          resolveLine(hit);
          return true;
        }
        if (!this.running) {
          done();
          reject(new Error(`${this.label} exited (code ${String(this.child.exitCode)}, signal ${String(this.child.signalCode)}) before the awaited log line; last output:\n${this.stderrText.slice(-15).join('\n')}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: awaited log line not seen within ${timeoutMs} ms; last output:\n${this.stderrText.slice(-15).join('\n')}`));
      }, timeoutMs);
      const waiter = (): void => void check();
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
      check();
    });
  }

  waitForMsg(msg: string, timeoutMs?: number, from = 0): Promise<LogLine> {
    return this.waitFor((l) => l.msg === msg, timeoutMs, from);
  }

  /**
   * A gateway fully started: 'gateway up' (tunnel listener and TUN), then the admin API's start line
   * (listening, disabled or not started), which comes after it; an admin request before that is refused.
   */
  async waitReady(timeoutMs = 20_000): Promise<void> {
    await this.waitForMsg('gateway up', timeoutMs);
    await this.waitFor((l) => l.msg.startsWith('admin API'), timeoutMs);
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }
}

/**
 * The tunnel transports the end-to-end suites run over, as config variants: quicgate's own QUIC (the default),
 * HTTP/2, and the library's HTTP/3 (opt-in: it needs `transports: { quic: off, h3: auto }`, see withTransports).
 */
export const TRANSPORTS = ['quic', 'h2', 'h3'] as const;
export type TunnelTransport = (typeof TRANSPORTS)[number];
/** What a client config may ask for: one transport, or `auto` (QUIC first, HTTP/2 when UDP is blocked). */
export type ClientTransport = TunnelTransport | 'auto';

/**
 * A gateway config that serves `transport`: the library's HTTP/3 takes the UDP port only with quicgate's QUIC
 * off; quic and h2 are served by the defaults (HTTP/2 always beside them).
 */
export function withTransports(yaml: string, transport: TunnelTransport): string {
  return transport === 'h3' ? `${yaml.trim()}\ntransports: { quic: off, h3: auto }\n` : yaml;
}

export interface TestUser {
  readonly name: string;
  readonly password: string;
  readonly bandwidth: string;
  readonly maxSessions?: number;
  /** scrypt cost exponent of the user's hash: 10 (cheap, quick tests) unless a test needs the hash to cost time. */
  readonly hashLn?: number;
}

/** A temporary directory with server config, users file and data dir; removed by cleanup(). */
export class GatewayFiles {
  readonly dir = mkdtempSync(join(tmpdir(), 'qg-e2e-'));
  readonly serverFile = join(this.dir, 'server.yaml');
  readonly usersFile = join(this.dir, 'users.yaml');
  readonly dataDir = join(this.dir, 'data');
  private hashes = new Map<string, string>();

  async writeUsers(users: readonly TestUser[]): Promise<void> {
    const lines = ['users:'];
    for (const u of users) {
      const key = `${u.name}\u0000${u.password}\u0000${u.hashLn ?? 10}`;
      let hash = this.hashes.get(key);
      if (hash === undefined) {
        hash = await hashPassword(u.password, { ln: u.hashLn ?? 10, r: 8, p: 1 });
        this.hashes.set(key, hash);
      }
      lines.push(`  - name: ${u.name}`, `    password_hash: "${hash}"`, `    bandwidth: ${u.bandwidth}`);
      if (u.maxSessions !== undefined) lines.push(`    max_sessions: ${u.maxSessions}`);
    }
    writeFileSync(this.usersFile, `${lines.join('\n')}\n`);
  }

  writeServer(yaml: string): void {
    writeFileSync(this.serverFile, `${yaml.trim()}\nusers_file: ${this.usersFile}\ndata_dir: ${this.dataDir}\n`);
  }

  clientFile(name: string, yaml: string): string {
    const file = join(this.dir, `client-${name}.yaml`);
    writeFileSync(file, `${yaml.trim()}\n`);
    return file;
  }

  /**
   * A client config for the test gateway (this gateway's CA, quick reconnects; HTTP/2 unless `transport`), written
   * to a file. `server`: another URL than GATEWAY_URL (a fleet's gateway, helpers/fleet.ts).
   */
  clientConfig(key: string, user: string, password: string, options: { tun?: string; reconnect?: string; transport?: ClientTransport; server?: string } = {}): string {
    return this.clientFile(
      key,
      `
server: ${options.server ?? GATEWAY_URL}
user: ${user}
password: ${password}
transport: ${options.transport ?? 'h2'}
ca_file: ${this.caFile}
tun_name: ${options.tun ?? 'qgc0'}
reconnect: ${options.reconnect ?? '{ initial: 300ms, max: 2s }'}
dead_after_missed_keepalives: 3
`,
    );
  }

  get caFile(): string {
    return join(this.dataDir, 'ca.pem');
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * `options.nodeArgs`: node options before the script (e.g. bench/scale.ts's --expose-gc and memory probe);
 * `options.env`: extra environment variables for the gateway process.
 */
export function startGateway(
  topo: Topology,
  files: GatewayFiles,
  options: { readonly nodeArgs?: readonly string[]; readonly env?: NodeJS.ProcessEnv; readonly ns?: string; readonly label?: string } = {},
): QuicgateProcess {
  const args = [...(options.nodeArgs ?? []), BIN, 'server', '--config', files.serverFile];
  return new QuicgateProcess(topo.spawn(options.ns ?? topo.server, process.execPath, args, options.env), options.label ?? 'gateway');
}

export function startClient(topo: Topology, ns: string, configFile: string, label: string): QuicgateProcess {
  return new QuicgateProcess(topo.spawn(ns, process.execPath, [BIN, 'client', '--config', configFile]), label);
}

export interface IperfResult {
  /** Receiver-side rate, bits per second. */
  readonly receivedBps: number;
  readonly sentBps: number;
  /** Per reporting interval (`-i`), as measured by the iperf3 client: the receiver with `-R`, else the sender. */
  readonly intervals: readonly { readonly start: number; readonly end: number; readonly bps: number }[];
}

/** Runs iperf3 client `args` in `ns` against an iperf3 server that `serverNs` starts for this one test. */
export async function iperf(
  topo: Topology,
  serverNs: string,
  clientNs: string,
  bind: string,
  port: number,
  args: readonly string[],
): Promise<IperfResult> {
  const server = topo.spawn(serverNs, 'iperf3', ['-s', '-1', '-B', bind, '-p', String(port)]);
  try {
    await new Promise((r) => setTimeout(r, 400));
    const seconds = Number(args[args.indexOf('-t') + 1] ?? 10);
    const { stdout } = await topo.exec(clientNs, 'iperf3', ['-c', bind, '-p', String(port), '-J', ...args], (seconds + 20) * 1000);
    const report = JSON.parse(stdout) as {
      intervals?: { sum: { start: number; end: number; bits_per_second: number } }[];
      end: { sum_received?: { bits_per_second: number }; sum_sent?: { bits_per_second: number } };
    };
    return {
      receivedBps: report.end.sum_received?.bits_per_second ?? 0,
      sentBps: report.end.sum_sent?.bits_per_second ?? 0,
      intervals: (report.intervals ?? []).map(({ sum }) => ({ start: sum.start, end: sum.end, bps: sum.bits_per_second })),
    };
  } finally {
    server.kill('SIGKILL');
  }
}

export function mbit(bps: number): number {
  return bps / 1e6;
}

export interface Testbed {
  readonly topo: Topology;
  readonly files: GatewayFiles;
  readonly gateway: QuicgateProcess;
}

/**
 * The common start of every end-to-end file: check the machine can run it (fail, never skip), clear stale
 * namespaces, build the topology, write config and users, and start the gateway until it logs "gateway up".
 */
/** Kill everything the testbed started, remove its namespaces and files (afterAll; safe when start failed). */
export async function stopTestbed(testbed: Partial<Testbed>): Promise<void> {
  await testbed.topo?.destroy();
  testbed.files?.cleanup();
}

export async function startTestbed(
  clientCount: number,
  users: readonly TestUser[],
  serverYaml: string,
  gatewayEnv?: NodeJS.ProcessEnv,
  gatewayNodeArgs?: readonly string[],
): Promise<Testbed> {
  await requireNetnsSupport();
  await removeStaleNamespaces();
  const topo = await Topology.create(clientCount);
  const files = new GatewayFiles();
  await files.writeUsers(users);
  files.writeServer(serverYaml);
  const gateway = startGateway(topo, files, { ...(gatewayEnv === undefined ? {} : { env: gatewayEnv }), ...(gatewayNodeArgs === undefined ? {} : { nodeArgs: gatewayNodeArgs }) });
  await gateway.waitReady();
  return { topo, files, gateway };
}
