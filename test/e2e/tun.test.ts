/**
 * Real TUN, real kernel: a helper process opens a LinuxTun inside a namespace of our own and answers echo
 * requests; real `ping` in that namespace must get replies (IPv4, a routed prefix, IPv6, a burst). Needs root,
 * /dev/net/tun and iputils-ping: without them this FAILS (it does not skip).
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const helper = path.join(root, 'test', 'e2e', 'helpers', 'tun-echo.ts');
const ns = `qgt-tun-${process.pid}`;

interface HelperEvent {
  event: string;
  name?: string;
  count?: number;
  echoed?: number;
  other?: string[];
  code?: string;
  stats?: { readBatches: number; readPackets: number; writtenPackets: number; writeDrops: number };
}

let child: ChildProcess | undefined;
let exited: Promise<number | null> | undefined;
const events: HelperEvent[] = [];
const waiters = new Set<() => void>();
let stderr = '';
let device = '';

function waitFor(predicate: (e: HelperEvent) => boolean, timeoutMs = 10_000): Promise<HelperEvent> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const found = events.find(predicate);
      if (found === undefined) return false;
      waiters.delete(check);
      clearTimeout(timer);
      resolve(found);
      return true;
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`helper event not seen in ${timeoutMs} ms; events: ${JSON.stringify(events.slice(-5))}; stderr: ${stderr}`));
    }, timeoutMs);
    if (!check()) waiters.add(check);
  });
}

async function inNs(...args: string[]): Promise<string> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, ...args], { timeout: 30_000 });
  return stdout;
}

async function ping(...args: string[]): Promise<string> {
  try {
    return await inNs('ping', '-n', ...args);
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? err);
  }
}

const batches = (): HelperEvent[] => events.filter((e) => e.event === 'batch');
const echoedTotal = (): number => batches().reduce((sum, e) => sum + (e.echoed ?? 0), 0);

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the TUN e2e test must run as root (it creates namespaces and TUNs)');
  if (!existsSync('/dev/net/tun')) throw new Error('/dev/net/tun is missing: load the tun module');
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  const settings = {
    name: 'qgt%d',
    mtu: 1400,
    addresses: [{ cidr: '198.18.0.1/24' }, { cidr: '2001:db8::1/64' }],
    routes: ['198.19.0.0/24'],
    throwFor: '198.18.0.66',
  };
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', helper, JSON.stringify(settings)], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child = proc;
  exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: proc.stdout }).on('line', (line) => {
    events.push(JSON.parse(line) as HelperEvent);
    for (const check of [...waiters]) check();
  });
  const ready = await waitFor((e) => e.event === 'ready', 30_000);
  device = ready.name ?? '';
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL');
  await run('ip', ['netns', 'del', ns]).catch(() => undefined);
});

describe('LinuxTun in a network namespace', () => {
  it('opens with the kernel-chosen name and applies addresses, MTU and txqueuelen', async () => {
    expect(device).toMatch(/^qgt\d+$/);
    const link = JSON.parse(await inNs('ip', '-j', 'addr', 'show', 'dev', device)) as {
      mtu: number;
      txqlen: number;
      flags: string[];
      addr_info: { local: string; prefixlen: number }[];
    }[];
    expect(link[0]?.mtu).toBe(1400);
    expect(link[0]?.txqlen).toBe(4096);
    expect(link[0]?.flags).toContain('UP');
    const addresses = link[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`);
    expect(addresses).toEqual(expect.arrayContaining(['198.18.0.1/24', '2001:db8::1/64']));
    // No link-local address: the device was told not to make one (no router solicitations follow).
    expect(addresses?.some((a) => a.startsWith('fe80'))).toBe(false);
  });

  it('reads IPv4 echo requests and writes replies that ping accepts', async () => {
    const out = await ping('-c', '3', '-i', '0.2', '-W', '2', '198.18.0.2');
    expect(out).toContain('3 received');
  });

  it('routes an extra prefix into the device', async () => {
    const out = await ping('-c', '2', '-i', '0.2', '-W', '2', '198.19.0.7');
    expect(out).toContain('2 received');
  });

  it('handles IPv6 (replies written with writeBatch)', async () => {
    const out = await ping('-6', '-c', '3', '-i', '0.2', '-W', '2', '2001:db8::2');
    expect(out).toContain('3 received');
  });

  it('hands bursts to JS in batches of more than one packet and at most 64', async () => {
    const before = echoedTotal();
    const out = await ping('-f', '-l', '48', '-c', '480', '-W', '5', '198.18.0.2');
    const summary = /(\d+) packets transmitted, (\d+) received/.exec(out);
    const [transmitted, received] = [Number(summary?.[1]), Number(summary?.[2])];
    expect(transmitted).toBeGreaterThanOrEqual(480);
    expect(received).toBe(transmitted);
    // The helper reports a batch just after writing its replies: wait for the last report to arrive.
    await waitFor(() => echoedTotal() - before >= received).catch(() => undefined);
    expect(echoedTotal() - before).toBe(received);
    const counts = batches().map((e) => e.count ?? 0);
    expect(Math.max(...counts)).toBeGreaterThan(1);
    expect(Math.max(...counts)).toBeLessThanOrEqual(64);
  });

  it('surfaces a throwing handler as an uncaught exception and keeps reading', async () => {
    const lost = await ping('-c', '1', '-W', '1', '198.18.0.66');
    expect(lost).toContain('0 received');
    const uncaught = await waitFor((e) => e.event === 'uncaught');
    expect(uncaught.code).toBeUndefined(); // the handler's own Error, not a QG code
    const out = await ping('-c', '2', '-i', '0.2', '-W', '2', '198.18.0.2');
    expect(out).toContain('2 received');
  });

  it('sent no router solicitations into the device', () => {
    const other = batches().flatMap((e) => e.other ?? []);
    expect(other.filter((d) => d.startsWith('ipv6 nh=58 type=133'))).toEqual([]);
  });

  it('close() removes the device and lets the process exit by itself', async () => {
    child?.stdin?.end();
    const closed = await waitFor((e) => e.event === 'closed');
    expect(closed.stats?.writtenPackets).toBe(echoedTotal());
    expect(closed.stats?.writeDrops).toBe(0);
    const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 5_000))]);
    expect(code).toBe(0);
    await expect(inNs('ip', 'link', 'show', 'dev', device)).rejects.toThrow();
  });

  it('a worker thread ending with a device open and reading neither crashes nor leaks the device', async () => {
    const out = await inNs(process.execPath, path.join(root, 'test', 'e2e', 'helpers', 'tun-worker.mjs'));
    const result = JSON.parse(out) as { opened: string; linksAfter: number };
    expect(result.opened).toMatch(/^qgtw\d+$/);
    expect(result.linksAfter).toBe(0);
  });
});
