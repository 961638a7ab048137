/**
 * Helpers of the hostile and fault end-to-end tests: the admin API from inside the gateway's namespace, the
 * gateway's /metrics, fd and RSS of a process, and the hand-made client (hostile-client.mjs) as a child
 * process whose JSON events can be awaited.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Topology } from './netns.js';

export const HOSTILE_CLIENT = resolve(import.meta.dirname, 'hostile-client.mjs');
const ADMIN = resolve(import.meta.dirname, 'hostile-admin.mjs');

export interface AdminAnswer {
  readonly status: number;
  readonly body: unknown;
}

/** `ns`: the namespace whose loopback the API listens on (default the hub; a fleet's gateway: topo.gateways[i]). */
export async function adminRequest(topo: Topology, token: string, method: string, path: string, port = 9090, ns = topo.server): Promise<AdminAnswer> {
  const { stdout } = await topo.exec(ns, process.execPath, [ADMIN, method, `http://127.0.0.1:${port}${path}`, token]);
  return JSON.parse(stdout) as AdminAnswer;
}

/** Samples of one metric from Prometheus text: label string (e.g. `reason="spoofed"`, or '') → value. */
export function metricSamples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? ([0-9.e+-]+)$`, 'gm'))) out.set(m[1] ?? '', Number(m[2]));
  return out;
}

export interface ProcessFootprint {
  readonly fds: number;
  readonly rssKb: number;
}

export function footprint(pid: number): ProcessFootprint {
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds, rssKb: Number(rss?.[1] ?? NaN) };
}

export type HostileEvent = Record<string, unknown> & { readonly event?: string };

/** The hand-made client running in a namespace; its stdout JSON lines are collected as events. */
export class HostileClient {
  readonly events: HostileEvent[] = [];
  /** The end of its stderr (an uncaught refusal lands there), for the error when it exits early. */
  private stderrTail = '';
  private readonly waiters = new Set<() => void>();
  readonly exited: Promise<void>;

  constructor(readonly child: ChildProcess) {
    let buffer = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-2000);
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const line of lines.filter(Boolean)) {
        try {
          this.events.push(JSON.parse(line) as HostileEvent);
        } catch {
          /* not ours */
        }
      }
      for (const w of this.waiters) w();
    });
    this.exited = new Promise((r) => child.once('exit', () => {
      for (const w of this.waiters) w();
      r();
    }));
  }

  static start(topo: Topology, ns: string, options: Record<string, unknown>): HostileClient {
    return new HostileClient(topo.spawn(ns, process.execPath, [HOSTILE_CLIENT, JSON.stringify(options)]));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  waitEvent(name: string, timeoutMs = 15_000): Promise<HostileEvent> {
    return new Promise((resolveEvent, reject) => {
      const check = (): void => {
        const hit = this.events.find((e) => e.event === name);
        if (hit) {
          done();
          resolveEvent(hit);
        } else if (!this.running) {
          done();
          const how = `exit code ${String(this.child.exitCode)}, signal ${String(this.child.signalCode)}`;
          reject(new Error(`hostile client exited before "${name}" (${how}); events: ${JSON.stringify(this.events)}; stderr: ${this.stderrTail.trim()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`hostile client: no "${name}" within ${timeoutMs} ms; events: ${JSON.stringify(this.events)}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface PingResult {
  readonly received: number;
  /** Round-trip times of the replies, ms. */
  readonly rtts: number[];
}

/** `count` pings every `intervalS` from namespace `ns` (each waits up to 5 s): replies and their times. */
export async function pingFrom(topo: Topology, ns: string, target: string, count: number, intervalS = 0.1): Promise<PingResult> {
  const out = await topo.exec(ns, 'ping', ['-c', String(count), '-i', String(intervalS), '-W', '5', target]);
  const rtts = [...out.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  return { received: Number(/(\d+) received/.exec(out.stdout)?.[1] ?? 0), rtts };
}

export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
