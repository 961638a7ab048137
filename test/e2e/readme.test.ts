/**
 * The README's first steps, exactly as written there, in network namespaces: against a copy of this checkout
 * (its package.json, links to the installed tree: the `npm ci` of the README is what scripts/test.sh ran),
 * `npm start` in the gateway's namespace; the README's client lines (pw.txt, `npx quicgate client …`, GATEWAY
 * replaced by the gateway's address) in a client namespace; ping through the tunnel; then Ctrl-C, i.e. SIGINT
 * to each command's process group as a terminal sends it, ends both with exit code 0. And `npx quicgate --help`.
 *
 * Runs as root; fails (never skips) when it cannot.
 */
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeStaleNamespaces, requireNetnsSupport, Topology } from './helpers/netns.js';

const REPO = resolve(import.meta.dirname, '../..');
const GATEWAY_TUNNEL_ADDRESS = '198.18.0.1'; // the embedded defaults' tunnel network is 198.18.0.0/16

/** The sh blocks of the README's "Two commands on a fresh machine" section, each as its lines. */
function readmeBlocks(): string[][] {
  const text = readFileSync(join(REPO, 'README.md'), 'utf8');
  const start = text.indexOf('## Two commands on a fresh machine');
  const end = text.indexOf('\n## ', start + 1);
  if (start === -1 || end === -1) throw new Error('README.md has no "Two commands on a fresh machine" section');
  const section = text.slice(start, end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.trim().split('\n'));
}

interface Running {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(pattern: RegExp, timeoutMs: number): Promise<void>;
}

let topo: Topology;
let checkout: string;

/** Runs `command` with sh in `ns`, in the checkout copy, as the leader of its own process group (a terminal job). */
function job(ns: string, command: string): Running {
  const child = topo.spawn(ns, 'sh', ['-c', `cd '${checkout}' && exec setsid ${command}`]);
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      lines.push(line);
      for (const w of waiters) w();
    });
  }
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once('exit', (code, signal) => done({ code, signal })),
  );
  return {
    child,
    lines,
    exit,
    waitFor: (pattern, timeoutMs) =>
      new Promise<void>((done, fail) => {
        const check = (): void => {
          if (!lines.some((l) => pattern.test(l))) return;
          clearTimeout(timer);
          waiters.delete(check);
          done();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          fail(new Error(`no line matching ${pattern} within ${timeoutMs} ms; output:\n${lines.slice(-20).join('\n')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
  };
}

/** Ctrl-C: SIGINT to the job's process group (setsid made the job's pid its group id). */
function ctrlC(running: Running): void {
  process.kill(-running.child.pid!, 'SIGINT');
}

beforeAll(async () => {
  await requireNetnsSupport();
  await removeStaleNamespaces();
  topo = await Topology.create(1);
  checkout = mkdtempSync(join(tmpdir(), 'qg-readme-'));
  for (const file of ['package.json', '.npmrc']) copyFileSync(join(REPO, file), join(checkout, file));
  for (const part of ['node_modules', 'dist', 'bin', 'config', 'native']) symlinkSync(join(REPO, part), join(checkout, part));
}, 60_000);

afterAll(async () => {
  await topo?.destroy();
  if (checkout !== undefined) rmSync(checkout, { recursive: true, force: true });
});

describe("the README's first steps", () => {
  it('npm start serves the embedded defaults; the client lines as written connect; Ctrl-C exits 0 on both', async () => {
    const [serverBlock, clientBlock] = readmeBlocks();
    expect(serverBlock).toEqual(['npm ci && npm start']);
    expect(clientBlock).toHaveLength(2);

    const gateway = job(topo.server, 'npm start');
    await gateway.waitFor(/"msg":"gateway up"/, 60_000);

    const [writePassword, clientCommand] = clientBlock!.map((l) => l.replaceAll('GATEWAY', topo.serverUnderlay));
    await topo.exec(topo.clients[0]!, 'sh', ['-c', `cd '${checkout}' && ${writePassword}`]); // throws unless it exits 0
    expect(readFileSync(join(checkout, 'pw.txt'), 'utf8')).toBe('alice-example\n');
    const client = job(topo.clients[0]!, clientCommand!);
    await client.waitFor(/tunnel up/, 30_000);
    const ping = await topo.exec(topo.clients[0]!, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GATEWAY_TUNNEL_ADDRESS]);
    expect(ping.stdout).toMatch(/3 received/);

    ctrlC(client);
    expect(await client.exit).toEqual({ code: 0, signal: null });
    await gateway.waitFor(/"reason":"client_closed"/, 10_000); // the client closed its session on the way out
    ctrlC(gateway);
    expect(await gateway.exit).toEqual({ code: 0, signal: null });
    expect(gateway.lines.some((l) => /"msg":"gateway stopped"/.test(l))).toBe(true);
  });

  it('npx quicgate --help runs the checkout\'s CLI', async () => {
    const help = await topo.exec(topo.server, 'sh', ['-c', `cd '${checkout}' && npx quicgate --help`], 30_000); // throws unless 0
    expect(help.stdout).toMatch(/^Usage: quicgate /);
    for (const command of ['server', 'client', 'users', 'sessions', 'stats']) expect(help.stdout).toContain(command);
  });
});
