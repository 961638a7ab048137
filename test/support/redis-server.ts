/**
 * A real redis-server (Debian's package) for tests: its own port on loopback, its own directory, no
 * persistence; stop() and start() again on the same port simulate an outage. Removed by stop()/dispose().
 * `options.spawn` starts it elsewhere (a test namespace: test/e2e/helpers/fleet.ts); readiness is then read
 * from its log ("Ready to accept connections"), since the port is not reachable from here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRedis {
  readonly port: number;
  readonly url: string;
  /** Start again after stop(), on the same port. */
  start(): Promise<void>;
  /** Kill the server (SIGKILL: an outage, not a clean shutdown). */
  stop(): Promise<void>;
  /** Stop and remove the directory. */
  dispose(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves when the server logs that it accepts connections; rejects when it exits first or after `timeoutMs`. */
function waitForReadyLine(proc: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => fail(new Error(`redis-server not ready within ${timeoutMs} ms:\n${text.slice(-2000)}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      if (text.includes('Ready to accept connections')) done();
    };
    const onExit = (): void => fail(new Error(`redis-server exited before it was ready:\n${text.slice(-2000)}`));
    const cleanup = (): void => {
      clearTimeout(timer);
      proc.stdout?.off('data', onData);
      proc.off('exit', onExit);
    };
    const done = (): void => { cleanup(); resolve(); };
    const fail = (err: Error): void => { cleanup(); reject(err); };
    proc.stdout?.on('data', onData);
    proc.once('exit', onExit);
  });
}

export interface TestRedisOptions {
  /** Address to listen on (default 127.0.0.1). */
  readonly bind?: string;
  /** Port (default: a free one on this host's loopback). */
  readonly port?: number;
  /** Start the process another way (e.g. inside a namespace); it must pipe stdout. */
  readonly spawn?: (cmd: string, args: readonly string[]) => ChildProcess;
}

export async function startTestRedis(options: TestRedisOptions = {}): Promise<TestRedis> {
  const bind = options.bind ?? '127.0.0.1';
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'qg-redis-'));
  let child: ChildProcess | null = null;

  const start = async (): Promise<void> => {
    if (child !== null) return;
    const args = ['--port', String(port), '--bind', bind, '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'];
    const launch = options.spawn;
    const proc = launch === undefined ? spawn('redis-server', args, { stdio: 'ignore' }) : launch('redis-server', args);
    child = proc;
    proc.once('exit', () => { if (child === proc) child = null; });
    if (launch === undefined) await waitForPort(port, 10_000);
    else await waitForReadyLine(proc, 10_000);
  };
  const stop = async (): Promise<void> => {
    const proc = child;
    if (proc === null) return;
    child = null;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  };
  await start();
  return {
    port,
    url: `redis://${bind}:${port}/0`,
    start,
    stop,
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves once `cond()` holds, polling every 20 ms; fails naming `what` after `timeoutMs` (real time). */
export async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
