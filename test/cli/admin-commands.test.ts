import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReloadResult } from '../../src/admin/backend.js';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import { AdminClient } from '../../src/cli/admin-client.js';
import { EXIT_RUNTIME, EXIT_USAGE } from '../../src/cli/fail.js';
import { silentLogger } from '../../src/log.js';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import { isQuicgateError } from '../../src/errors.js';
import { FakeAdminBackend } from '../support/fake-admin-backend.js';
import { operatorProgram, run, testIo, type TestIo } from './cli-io.js';

const TOKEN = 'cli-test-token-0123456789';

let backend: FakeAdminBackend;
let metrics: MetricsExporter;
let server: AdminServer;
let base: string;
let dir: string;

beforeEach(async () => {
  backend = new FakeAdminBackend();
  backend.addUser('alice', { bandwidth: 2_500_000 });
  backend.addUser('bob');
  backend.addUser('carol');
  backend.addSession('s-alice-1', 'alice', { transport: 'h3', bytesIn: 1500, bytesOut: 3 * 1024 * 1024, rateOut: 1_250_000, startedAt: new Date(Date.now() - 3_723_000).toISOString() });
  backend.addSession('s-alice-2', 'alice', { transport: 'h2', ipv6: '2001:db8:4711::3', startedAt: new Date(Date.now() - 60_000).toISOString() });
  backend.addSession('s-bob-1', 'bob', { transport: 'h2' });
  backend.rejections.auth_failed = 4;
  metrics = new MetricsExporter(backend, { defaultMetrics: false });
  const started = await startAdminServer({ config: { enabled: true, listen: '127.0.0.1', port: 0, token: TOKEN }, backend, metrics, logger: silentLogger() });
  if (started === null) throw new Error('admin server did not start');
  server = started;
  base = `http://127.0.0.1:${server.port}`;
  dir = mkdtempSync(join(tmpdir(), 'qg-admin-cli-'));
});

afterEach(async () => {
  await server.close();
  metrics.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs a command against the test server with the right token, unless the args say otherwise. */
async function admin(args: string[], env: Record<string, string> = {}): Promise<TestIo> {
  const io = testIo({ env });
  await run(io, ...args);
  return io;
}

const conn = (): string[] => ['--admin', base, '--token', TOKEN];

function expectFailure(io: TestIo, code: string, exitCode: number): string {
  expect(io.failures).toHaveLength(1);
  const failure = io.failures[0]!;
  expect(isQuicgateError(failure.error) ? failure.error.code : failure.error).toBe(code);
  expect(failure.exitCode).toBe(exitCode);
  expect(io.err()).toBe(`quicgate: ${failure.line}\n`); // exactly one line
  expect(io.out()).toBe('');
  return failure.line;
}

function expectSuccess(io: TestIo): void {
  expect(io.failures.map((f) => f.line)).toEqual([]);
}

describe('sessions list', () => {
  it('prints a table sorted by user, in human units', async () => {
    const io = await admin(['sessions', 'list', ...conn()]);
    expectSuccess(io);
    const lines = io.out().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+USER\s+ADDRESSES\s+PEER\s+VIA\s+UP\s+IDLE\s+IN\s+OUT\s+RATE IN\s+RATE OUT$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['s-alice-1', 's-alice-2', 's-bob-1']);
    const first = lines.find((l) => l.startsWith('s-alice-1'))!;
    expect(first).toMatch(/\sh3\s+1h2m3s\s/);
    expect(first).toMatch(/1.46 KiB\s+3 MiB\s+800 bit\/s\s+10 Mbit\/s$/);
    expect(lines.find((l) => l.startsWith('s-alice-2'))).toContain('198.18.0.3,2001:db8:4711::3');
  });

  it('--user shows only that user, --json the API answer', async () => {
    const io = await admin(['sessions', 'list', '--user', 'alice', '--json', ...conn()]);
    expectSuccess(io);
    const parsed = JSON.parse(io.out()) as { sessions: { id: string; bytesOut: number }[] };
    expect(parsed.sessions.map((s) => s.id).sort()).toEqual(['s-alice-1', 's-alice-2']);
    expect(parsed.sessions.find((s) => s.id === 's-alice-1')?.bytesOut).toBe(3 * 1024 * 1024);
  });

  it('says so when there are none, and fails for an unknown user', async () => {
    let io = await admin(['sessions', 'list', '--user', 'carol', ...conn()]);
    expectSuccess(io);
    expect(io.out()).toBe('no live sessions of carol\n');
    io = await admin(['sessions', 'list', '--user', 'nobody', ...conn()]);
    expect(expectFailure(io, 'QG_ERR_USER_NOT_FOUND', EXIT_RUNTIME)).toContain('nobody');
  });
});

describe('sessions list with config fleet', () => {
  /** The backend answers as a gateway of a fleet: its sessions on gw1, bob's on gw2. */
  function asFleet(complete = true): string[] {
    const asked: string[] = [];
    backend.listAllSessions = async (gateway) => {
      asked.push(gateway ?? '*');
      const all = backend.listSessions().map((s) => ({ ...s, gateway: s.user === 'bob' ? 'gw2' : 'gw1' }));
      const sessions = all.filter((s) => (complete || s.gateway === 'gw1') && (gateway === null || s.gateway === gateway));
      return { sessions, fleet: { gateway: 'gw1', gateways: complete ? ['gw1', 'gw2'] : ['gw1'], complete, ...(complete ? {} : { error: 'connect ECONNREFUSED' }) } };
    };
    return asked;
  }

  it('shows the owning gateway, filters by gateway and by user across the fleet', async () => {
    const asked = asFleet();
    let io = await admin(['sessions', 'list', ...conn()]);
    expectSuccess(io);
    const lines = io.out().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+GATEWAY\s+USER\s/);
    expect(lines.find((l) => l.startsWith('s-bob-1'))).toMatch(/^s-bob-1\s+gw2\s+bob\s/);
    io = await admin(['sessions', 'list', '--gateway', 'gw2', '--json', ...conn()]);
    expectSuccess(io);
    expect(JSON.parse(io.out())).toMatchObject({ sessions: [{ id: 's-bob-1', gateway: 'gw2' }], fleet: { gateway: 'gw1', complete: true } });
    io = await admin(['sessions', 'list', '--user', 'alice', ...conn()]);
    expectSuccess(io);
    expect(io.out().trimEnd().split('\n').slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['s-alice-1', 's-alice-2']);
    expect(asked).toEqual(['*', 'gw2', '*']);
  });

  it('warns when only the answering gateway could be listed', async () => {
    asFleet(false);
    const io = await admin(['sessions', 'list', ...conn()]);
    expect(io.failures).toEqual([]);
    expect(io.err()).toBe("warning: only gateway gw1's sessions are listed: the fleet's Redis cannot be reached (connect ECONNREFUSED)\n");
    expect(io.out()).not.toContain('s-bob-1');
  });

  it('says which gateway ended a session killed through another one', async () => {
    backend.killAnySession = async (id) => (backend.killSession(id) ? { gateway: 'gw2' } : null);
    const io = await admin(['sessions', 'kill', 's-bob-1', ...conn()]);
    expectSuccess(io);
    expect(io.out()).toBe('closed session s-bob-1 on gateway gw2\n');
  });
});

describe('sessions kill', () => {
  it('ends one session by id', async () => {
    const io = await admin(['sessions', 'kill', 's-bob-1', ...conn()]);
    expectSuccess(io);
    expect(io.out()).toBe('closed session s-bob-1\n');
    expect(backend.ended).toEqual([{ id: 's-bob-1', reason: 'admin_kill' }]);
  });

  it("ends all of a user's sessions with --user", async () => {
    const io = await admin(['sessions', 'kill', '--user', 'alice', ...conn()]);
    expectSuccess(io);
    expect(io.out()).toContain('closed 2 sessions of alice');
    expect([...backend.sessions.keys()]).toEqual(['s-bob-1']);
  });

  it('answers with the JSON of the API for scripts', async () => {
    const io = await admin(['sessions', 'kill', '--user', 'carol', '--json', ...conn()]);
    expectSuccess(io);
    expect(JSON.parse(io.out())).toEqual({ user: 'carol', sessionsClosed: 0, reason: 'admin_kill' });
  });

  it('fails with the server code for an unknown session or user', async () => {
    let io = await admin(['sessions', 'kill', 'no-such-session', ...conn()]);
    expect(expectFailure(io, 'QG_ERR_SESSION_NOT_FOUND', EXIT_RUNTIME)).toContain('no-such-session');
    io = await admin(['sessions', 'kill', '--user', 'nobody', ...conn()]);
    expectFailure(io, 'QG_ERR_USER_NOT_FOUND', EXIT_RUNTIME);
    io = await admin(['sessions', 'kill', 'bad/id', ...conn()]);
    expectFailure(io, 'QG_ERR_ADMIN_BAD_REQUEST', EXIT_RUNTIME);
    expect(backend.ended).toEqual([]);
  });

  it('wants exactly one of an id and --user', async () => {
    let io = await admin(['sessions', 'kill', ...conn()]);
    expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE);
    io = await admin(['sessions', 'kill', 's-bob-1', '--user', 'bob', ...conn()]);
    expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE);
    expect(backend.ended).toEqual([]);
  });
});

describe('stats and reload', () => {
  it('prints totals and top users for the default window', async () => {
    const io = await admin(['stats', ...conn()]);
    expectSuccess(io);
    expect(backend.statsWindows).toEqual([24]);
    expect(io.out()).toMatch(/^window\s+last 24 h$/m);
    expect(io.out()).toMatch(/^active sessions\s+3 \(2 users\)$/m);
    expect(io.out()).toMatch(/^answered by\s+fake-gateway$/m);
    expect(io.out()).toMatch(/^history\s+this gateway's own \(SQLite\)$/m);
    expect(io.out()).toMatch(/^live sessions\s+this gateway's only$/m);
    expect(io.out()).toMatch(/^rejections\s+auth_failed 4$/m);
    expect(io.out()).toMatch(/^alice\s+3.01 MiB$/m);
  });

  it('passes --window-hours and prints JSON', async () => {
    const io = await admin(['stats', '--window-hours', '168', '--json', ...conn()]);
    expectSuccess(io);
    expect(backend.statsWindows).toEqual([168]);
    expect(JSON.parse(io.out())).toMatchObject({ windowHours: 168, activeSessions: 3, topUsers: [{ user: 'alice' }, { user: 'bob' }] });
  });

  it('passes --gateway on to the admin API', async () => {
    const io = await admin(['stats', '--gateway', 'gw2', '--json', ...conn()]);
    expectSuccess(io);
    expect(backend.statsGateways).toEqual(['gw2']);
  });

  it('refuses a bad --window-hours before asking the gateway', async () => {
    for (const value of ['0', '8761', '1.5', 'week']) {
      const io = await admin(['stats', '--window-hours', value, ...conn()]);
      expect(expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE)).toContain('--window-hours');
    }
    expect(backend.statsWindows).toEqual([]);
  });

  it('reloads and says what changed, or why it was refused', async () => {
    backend.reloadOutcome = { bandwidthChanged: ['alice'], usersRemoved: ['mallory'], sessionsClosed: 1, needRestart: ['networks'], changed: [{ key: 'tunnel.ipv4/tunnel.ipv6', effect: 'restart' }] };
    let io = await admin(['reload', ...conn()]);
    expectSuccess(io);
    expect(io.out()).toBe('configuration reloaded; bandwidth changed for alice; users removed or disabled: mallory; 1 session closed; changed but only applied after a restart: networks\n');
    backend.reloadOutcome = { bandwidthChanged: [], usersRemoved: [], sessionsClosed: 0, needRestart: ['port', 'networks'], changed: [{ key: 'shaping_delay', effect: 'restart' }, { key: 'log_level', effect: 'live' }] } as ReloadResult;
    io = await admin(['reload', ...conn()]);
    expect(io.out()).toBe('configuration reloaded; applied now: log_level; changed but only applied after a restart: port, networks\n');
    backend.failNextReloads('users.yaml: users[2].bandwidth: expected a rate');
    io = await admin(['reload', ...conn()]);
    expect(expectFailure(io, 'QG_ERR_RELOAD_FAILED', EXIT_RUNTIME)).toContain('users[2].bandwidth');
    expect(backend.reloadCalls).toBe(3);
  });
});

describe('connection and token', () => {
  it('a wrong token fails with the server code, exit 1 and one line with a hint', async () => {
    const io = await admin(['sessions', 'list', '--admin', base, '--token', 'wrong-token-0123456789']);
    const line = expectFailure(io, 'QG_ERR_ADMIN_UNAUTHORIZED', EXIT_RUNTIME);
    expect(line).toContain('invalid bearer token');
    expect(line).toContain('QUICGATE_ADMIN_TOKEN');
  });

  it('without any token fails before connecting', async () => {
    const io = await admin(['stats', '--admin', base]);
    expect(expectFailure(io, 'QG_ERR_ADMIN_UNAUTHORIZED', EXIT_RUNTIME)).toContain('no admin token');
    expect(backend.statsWindows).toEqual([]);
  });

  it('takes the token from $QUICGATE_ADMIN_TOKEN', async () => {
    const io = await admin(['stats', '--admin', base], { QUICGATE_ADMIN_TOKEN: TOKEN });
    expectSuccess(io);
  });

  it('takes address and token from the server config (--config or $QUICGATE_CONFIG)', async () => {
    const config = join(dir, 'server.yaml');
    writeFileSync(config, `admin:\n  listen: 0.0.0.0\n  port: ${server.port}\n  token: ${TOKEN}\nusers_file: users-not-created-yet.yaml\n`);
    let io = await admin(['sessions', 'list', '--config', config]);
    expectSuccess(io);
    expect(io.out()).toContain('s-bob-1');
    io = await admin(['sessions', 'kill', 's-bob-1'], { QUICGATE_CONFIG: config });
    expectSuccess(io);
  });

  it('a gateway that is down gives one clear line', async () => {
    await server.close();
    const io = await admin(['sessions', 'list', ...conn()]);
    const line = expectFailure(io, 'QG_ERR_CONNECT_FAILED', EXIT_RUNTIME);
    expect(line).toBe(`QG_ERR_CONNECT_FAILED: cannot reach the admin API at ${base}/: connection refused (is the gateway running, with admin.token set?)`);
  });

  it('refuses a malformed --admin URL', async () => {
    const io = await admin(['stats', '--admin', 'localhost:9090', '--token', TOKEN]);
    expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE);
  });

  it('every command has help with the connection options', async () => {
    for (const args of [['sessions', 'list'], ['sessions', 'kill'], ['stats'], ['reload']]) {
      const { program, help } = operatorProgram(testIo());
      await expect(program.parseAsync([...args, '--help'], { from: 'user' })).rejects.toMatchObject({ code: 'commander.helpDisplayed' });
      expect(help()).toContain('--admin <url>');
      expect(help()).toContain('QUICGATE_ADMIN_TOKEN');
    }
  });
});

describe('AdminClient against a misbehaving server', () => {
  let odd: Server;
  let oddBase: string;
  let answer: { status: number; type: string; body: string };

  beforeEach(async () => {
    odd = createServer((_req, res) => {
      res.writeHead(answer.status, { 'Content-Type': answer.type });
      res.end(answer.body);
    });
    await new Promise<void>((resolve) => odd.listen(0, '127.0.0.1', resolve));
    oddBase = `http://127.0.0.1:${(odd.address() as AddressInfo).port}/`;
  });

  afterEach(async () => {
    odd.closeAllConnections();
    await new Promise((resolve) => odd.close(resolve));
  });

  const client = (): AdminClient => new AdminClient({ baseUrl: oddBase, token: TOKEN }, { timeoutMs: 2000 });

  it('an answer of the wrong shape is QG_ERR_ADMIN_INTERNAL naming the field', async () => {
    answer = { status: 200, type: 'application/json', body: JSON.stringify({ sessions: [{ id: 1 }] }) };
    await expect(client().listSessions()).rejects.toMatchObject({ code: 'QG_ERR_ADMIN_INTERNAL', message: expect.stringContaining('sessions.0.id') });
  });

  it('an error page without JSON is QG_ERR_ADMIN_INTERNAL with the status', async () => {
    answer = { status: 502, type: 'text/html', body: '<h1>Bad Gateway</h1>' };
    await expect(client().stats()).rejects.toMatchObject({ code: 'QG_ERR_ADMIN_INTERNAL', message: expect.stringContaining('HTTP 502') });
  });

  it('an unknown error code is kept in the message', async () => {
    answer = { status: 500, type: 'application/json', body: JSON.stringify({ error: { code: 'QG_ERR_FROM_THE_FUTURE', message: 'new' } }) };
    await expect(client().reload()).rejects.toMatchObject({ code: 'QG_ERR_ADMIN_INTERNAL', message: 'QG_ERR_FROM_THE_FUTURE: new' });
  });
});
