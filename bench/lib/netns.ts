/**
 * Namespaces and quicgate processes for the benchmarks (names `qgb-<id>-…`, never `qge-` of the e2e tests).
 *
 *   qgb-<id>-s    gateway, bridge qgbbr0 192.0.2.1/24, tunnel 198.18.0.1
 *   qgb-<id>-cN   client N, veth 192.0.2.(10+N)
 *
 * Nothing is configured in the host's namespace. destroy() kills every process started here, deletes the
 * namespaces (with them veths and TUNs) and the temporary directory; it also runs on exit and on SIGINT/SIGTERM.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { hashPassword } from '../../src/config/password.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/quicgate.js');
export const GW4 = '198.18.0.1';

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function sh(cmd: string, args: readonly string[], timeoutMs = 60_000): string {
  return execFileSync(cmd, args as string[], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
}

/** A running process with its output lines; waitFor() resolves on the first line that matches. */
export class Proc {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  private waiters = new Set<() => void>();
  constructor(readonly child: ChildProcess, readonly label: string) {
    let buf = '';
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      for (const w of this.waiters) w();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((r) => child.once('exit', (code) => {
      for (const w of this.waiters) w();
      r(code);
    }));
  }
  get pid(): number {
    return this.child.pid ?? -1;
  }
  waitFor(re: RegExp, timeoutMs = 20_000, from = 0): Promise<string> {
    return new Promise((res, rej) => {
      const check = (): void => {
        const hit = this.lines.slice(from).find((l) => re.test(l));
        if (hit !== undefined) return done(() => res(hit));
        if (this.child.exitCode !== null || this.child.signalCode !== null) {
          done(() => rej(new Error(`${this.label} exited; last output:\n${this.lines.slice(-10).join('\n')}`)));
        }
      };
      const timer = setTimeout(() => done(() => rej(new Error(`${this.label}: ${re} not seen in ${timeoutMs} ms:\n${this.lines.slice(-10).join('\n')}`))), timeoutMs);
      const done = (f: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }
  /** Resolves with all stdout once the process exits. */
  async output(): Promise<string> {
    await this.exited;
    return this.lines.join('\n');
  }
}

export interface BenchUser {
  readonly name: string;
  readonly bandwidth: string;
  readonly maxSessions?: number;
}

const live = new Set<Topology>();
let hooked = false;
function hook(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const t of live) t.destroySync();
  });
  for (const s of ['SIGINT', 'SIGTERM'] as const) {
    process.once(s, () => {
      for (const t of live) t.destroySync();
      process.exit(130);
    });
  }
}

export class Topology {
  readonly server: string;
  readonly clients: string[];
  readonly dir = mkdtempSync(join(tmpdir(), 'qgb-'));
  private procs = new Set<ChildProcess>();
  private destroyed = false;

  constructor(tag: string, clientCount: number) {
    const id = `${tag}${process.pid.toString(36)}`.slice(0, 6);
    this.server = `qgb-${id}-s`;
    this.clients = Array.from({ length: clientCount }, (_, i) => `qgb-${id}-c${i + 1}`);
    live.add(this);
    hook();
  }

  build(): void {
    const s = this.server;
    try {
      sh('ip', ['netns', 'add', s]);
      this.exec(s, 'ip', ['link', 'set', 'lo', 'up']);
      this.exec(s, 'ip', ['link', 'add', 'qgbbr0', 'type', 'bridge']);
      this.exec(s, 'ip', ['addr', 'add', '192.0.2.1/24', 'dev', 'qgbbr0']);
      this.exec(s, 'ip', ['link', 'set', 'qgbbr0', 'up']);
      for (const [i, c] of this.clients.entries()) {
        sh('ip', ['netns', 'add', c]);
        this.exec(c, 'ip', ['link', 'set', 'lo', 'up']);
        sh('ip', ['link', 'add', 'qgbv0', 'netns', c, 'type', 'veth', 'peer', 'name', `qgbp${i}`, 'netns', s]);
        this.exec(c, 'ip', ['addr', 'add', `192.0.2.${11 + i}/24`, 'dev', 'qgbv0']);
        this.exec(c, 'ip', ['link', 'set', 'qgbv0', 'up']);
        this.exec(s, 'ip', ['link', 'set', `qgbp${i}`, 'master', 'qgbbr0']);
        this.exec(s, 'ip', ['link', 'set', `qgbp${i}`, 'up']);
      }
    } catch (err) {
      this.destroySync();
      throw err;
    }
  }

  exec(ns: string, cmd: string, args: readonly string[], timeoutMs?: number): string {
    return sh('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs);
  }

  spawn(ns: string, cmd: string, args: readonly string[], label = cmd): Proc {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.procs.add(child);
    child.once('exit', () => this.procs.delete(child));
    return new Proc(child, label);
  }

  async writeUsers(users: readonly BenchUser[], extra = ''): Promise<string> {
    const file = join(this.dir, 'users.yaml');
    const lines = ['users:'];
    for (const u of users) {
      lines.push(`  - name: ${u.name}`, `    password_hash: "${await hashOnce(u.name)}"`, `    bandwidth: ${u.bandwidth}`);
      if (u.maxSessions !== undefined) lines.push(`    max_sessions: ${u.maxSessions}`);
    }
    writeFileSync(file, `${lines.join('\n')}\n${extra}`);
    return file;
  }

  /** Writes server.yaml (the `yaml` body plus users_file and data_dir) and starts the gateway. */
  async startGateway(yaml: string, nodeArgs: readonly string[] = []): Promise<Proc> {
    const file = join(this.dir, 'server.yaml');
    writeFileSync(file, `${yaml.trim()}\nusers_file: ${join(this.dir, 'users.yaml')}\ndata_dir: ${join(this.dir, 'data')}\n`);
    const gw = this.spawn(this.server, process.execPath, [...nodeArgs, BIN, 'server', '--config', file], 'gateway');
    await gw.waitFor(/"gateway up"/);
    return gw;
  }

  get caFile(): string {
    return join(this.dir, 'data', 'ca.pem');
  }

  async startClient(ns: string, user: string, label: string): Promise<Proc> {
    const file = join(this.dir, `client-${label}.yaml`);
    writeFileSync(
      file,
      `server: https://192.0.2.1:4433/\nuser: ${user}\npassword: ${user}-pw\ntransport: h2\nca_file: ${this.caFile}\ntun_name: qgbc0\n`,
    );
    const c = this.spawn(ns, process.execPath, [BIN, 'client', '--config', file], label);
    await c.waitFor(/"tunnel up"/);
    return c;
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const p of this.procs) p.kill('SIGKILL');
    for (const ns of [this.server, ...this.clients]) {
      // Anything else still living in the namespace (children of `ip netns exec`) goes too.
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean) ?? [];
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      spawnSync('ip', ['netns', 'del', ns]);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const hashes = new Map<string, string>();
async function hashOnce(user: string): Promise<string> {
  let h = hashes.get(user);
  if (h === undefined) {
    h = await hashPassword(`${user}-pw`, { ln: 10, r: 8, p: 1 });
    hashes.set(user, h);
  }
  return h;
}

/** Median of the finite values (NaN when none). */
export function median(values: readonly number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export function quantile(values: readonly number[], q: number): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v[Math.min(v.length - 1, Math.floor(q * v.length))]!;
}

/** RTTs (ms) from ping output. */
export function pingRtts(text: string): number[] {
  return [...text.matchAll(/time=([0-9.]+) ms/g)].map((m) => Number(m[1]));
}
