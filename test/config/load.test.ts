import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/config/password.js';
import { EXAMPLE_USERS_FILE, loadServerConfig, parseServerConfigText } from '../../src/config/load.js';
import { fixture, problemAt, problems, thrown } from './helpers.js';

const SOURCE = fixture('inline.yaml');
let hash = '';

beforeAll(async () => {
  hash = await hashPassword('pw', { ln: 4, r: 8, p: 1 }); // cheap but real
});

function parse(text: string) {
  return parseServerConfigText(text, SOURCE);
}

function users(...entries: string[]): string {
  return `users:\n${entries.map((e) => `  - name: ${e}\n    password_hash: '${hash}'\n`).join('')}`;
}

describe('await loadServerConfig() without a file', () => {
  it('returns the embedded defaults with the example users', async () => {
    const c = await loadServerConfig();
    expect(c.source).toBe('<defaults>');
    expect([c.listen, c.port]).toEqual(['0.0.0.0', 4433]);
    expect(c.networks.ipv4).toEqual({ cidr: '198.18.0.0/16', gateway: '198.18.0.1' });
    expect(c.networks.ipv6).toEqual({ cidr: '2001:db8:4711::/64', gateway: '2001:db8:4711::1' });
    expect(c.mtu).toBe(1400);
    expect(c.shapingDelayMs).toBe(50);
    expect(c.allowClientToClient).toBe(false);
    expect(c.dataDir).toBe(resolve('data'));
    expect(c.admin).toEqual({ enabled: false, listen: '127.0.0.1', port: 9090, token: null });
    expect(c.tls).toEqual({ certFile: null, keyFile: null, names: [] });
    expect(c.usersFile).toBeNull();
    expect(c.users.map((u) => u.name)).toEqual(['alice', 'bob', 'carol', 'dave']);
    expect(EXAMPLE_USERS_FILE).toMatch(/config\/users\.example\.yaml$/);
  });

  it('returns a frozen object', async () => {
    const c = await loadServerConfig();
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.limits)).toBe(true);
    expect(Object.isFrozen(c.users[0])).toBe(true);
  });
});

describe('parseServerConfigText', () => {
  it('fills every key of an empty file from the defaults, with no users', async () => {
    const c = await parse('');
    const d = await loadServerConfig();
    expect(c.source).toBe(SOURCE);
    expect(c.users).toEqual([]);
    expect({ ...c, source: '', users: [] }).toEqual({ ...d, source: '', users: [] });
  });

  it('maps snake_case keys to typed values and keeps unset neighbours at their defaults', async () => {
    const c = await parse(`
listen: { address: '::', port: 8443 }
tunnel:
  name: vpn7
  mtu: 1500
  offload: false
  ipv4: { network: 198.19.0.0/24, gateway: 198.19.0.254 }
  ipv6: { network: '2001:DB8:0:0::/64' }
  dns: [198.19.0.254, '2001:db8::53']
  routes: [0.0.0.0/0, '::/0']
default_bandwidth: 10 Mbit/s
limits: { idle_timeout: 10m, session_timeout: 12h, at_limit: replace_oldest }
keepalive_interval: 20s
shaping_delay: 80ms
shaping: fifo
send_queue_packets: 256
allow_client_to_client: true
transports: { h3: off }
auth_attempts: { per_source_per_minute: 3 }
admin: { token: 'abcdefghijklmnopq', port: 9191 }
history: { retention_days: 0, flush_interval: 1s, batch_size: 50 }
log_level: debug
data_dir: state
tls: { cert_file: cert.pem, key_file: /etc/qg/key.pem }
${users('alice')}`);
    expect([c.listen, c.port, c.tunName, c.mtu, c.tunOffload]).toEqual(['::', 8443, 'vpn7', 1500, false]);
    expect(c.networks.ipv4).toEqual({ cidr: '198.19.0.0/24', gateway: '198.19.0.254' });
    expect(c.networks.ipv6).toEqual({ cidr: '2001:db8::/64', gateway: '2001:db8::1' });
    expect(c.dns).toEqual(['198.19.0.254', '2001:db8::53']);
    expect(c.routes).toEqual(['0.0.0.0/0', '::/0']);
    expect(c.defaultBandwidth).toBe(1_250_000);
    expect(c.limits).toEqual({ maxSessionsPerUser: 4, maxTotalSessions: 1000, idleTimeoutMs: 600_000, sessionTimeoutMs: 43_200_000, atLimit: 'replace_oldest' });
    expect([c.keepaliveIntervalMs, c.shapingDelayMs, c.sendQueuePackets, c.allowClientToClient]).toEqual([20_000, 80, 256, true]);
    expect(c.shaping).toBe('fifo');
    expect(c.transports).toEqual({ h2: true, h3: 'off', quic: 'auto' });
    expect(c.authAttempts.perSourcePerMinute).toBe(3);
    expect(c.admin).toEqual({ enabled: true, listen: '127.0.0.1', port: 9191, token: 'abcdefghijklmnopq' });
    expect(c.history).toEqual({ enabled: true, retentionDays: 0, flushIntervalMs: 1000, batchSize: 50, queueLimit: 100_000, busyTimeoutMs: 1000, rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null });
    expect(c.logLevel).toBe('debug');
    expect(c.dataDir).toBe(fixture('state'));
    expect(c.tls).toEqual({ certFile: fixture('cert.pem'), keyFile: '/etc/qg/key.pem', names: [] });
    // A user without bandwidth gets the server default.
    expect(c.users[0]).toMatchObject({ name: 'alice', bandwidth: 1_250_000, burst: null, maxSessions: null, disabled: false, quota: null });
  });

  it('reads memory.trim_after_freed as a size, null as never, 16 MiB by default, and refuses 0', async () => {
    expect((await parse('')).memory).toEqual({ trimAfterFreedBytes: 16 * 1024 * 1024 });
    expect((await parse('memory: { trim_after_freed: 8 MiB }\n')).memory).toEqual({ trimAfterFreedBytes: 8 * 1024 * 1024 });
    expect((await parse('memory: { trim_after_freed: null }\n')).memory).toEqual({ trimAfterFreedBytes: null });
    expect(problemAt(await problems(() => parse('memory: { trim_after_freed: 0 }\n')), 'memory.trim_after_freed').message).toMatch(/size above zero/);
  });

  it('turns IPv6 off with ipv6: null, which then allows a smaller MTU', async () => {
    const c = await parse('tunnel:\n  ipv6: null\n  mtu: 576\n');
    expect(c.networks.ipv6).toBeNull();
    expect(c.mtu).toBe(576);
  });

  it('reads user fields in every form', async () => {
    const c = await parse(`users:
  - name: carol
    password_hash: '${hash}'
    bandwidth: 1.5 MB/s
    burst: 256 KiB
    max_sessions: 1
    static_addresses: [198.18.0.10, '2001:DB8:4711::10']
    disabled: true
    quota: { bytes: 10 GiB, period: day, action: throttle, throttle_rate: 512 kbit/s }
  - name: dan
    password_hash: '${hash}'
    bandwidth: unlimited
    quota: { bytes: 1000000, period: month }
`);
    expect(c.users[0]).toEqual({
      name: 'carol',
      passwordHash: hash,
      bandwidth: 1_500_000,
      burst: 262_144,
      maxSessions: 1,
      staticAddresses: ['198.18.0.10', '2001:db8:4711::10'],
      disabled: true,
      quota: { bytes: 10 * 1024 ** 3, period: 'day', action: 'throttle', throttleRate: 64_000 },
    });
    expect(c.users[1]).toMatchObject({ bandwidth: null, quota: { bytes: 1_000_000, period: 'month', action: 'disconnect', throttleRate: null } });
  });
});

describe('users in a separate file', () => {
  it('loads users_file relative to the server file', async () => {
    const c = await loadServerConfig(fixture('server-with-users-file.yaml'));
    expect(c.usersFile).toBe(fixture('users.yaml'));
    expect(c.port).toBe(8443);
    expect(c.dataDir).toBe(resolve(fixture(''), '../state'));
    expect(c.users.map((u) => [u.name, u.bandwidth, u.burst, u.staticAddresses])).toEqual([
      ['alice', 2_500_000, 65_536, []],
      ['bob', 625_000, null, ['198.18.0.20']], // default_bandwidth 5 Mbit/s
    ]);
  });

  it('names the users file and the user in problems found there', async () => {
    const issues = await problems(() => loadServerConfig(fixture('server-with-bad-users.yaml')));
    expect(issues.map((i) => [i.file, i.path, i.line])).toEqual([
      [fixture('bad-users.yaml'), 'users[0].bandwidth', 4],
      [fixture('bad-users.yaml'), 'users[1].bandwidth', 7],
    ]);
    expect(issues[0]!.message).toContain('prefix "m" means milli');
    expect(issues[1]!.message).toContain('bare number is ambiguous');
  });

  it('reports problems of the server file and the users file in one error', async () => {
    const issues = await problems(() => parse('users_file: bad-users.yaml\nlimits: { idle_timout: 5m }\n'));
    expect(issues.map((i) => [i.file, i.path])).toEqual([
      [SOURCE, 'limits.idle_timout'],
      [fixture('bad-users.yaml'), 'users[0].bandwidth'],
      [fixture('bad-users.yaml'), 'users[1].bandwidth'],
    ]);
  });

  it('checks static addresses of the users file against the server networks', async () => {
    const text = `users_file: users.yaml\ntunnel:\n  ipv4: { network: 198.18.0.0/28 }\n`;
    const issue = problemAt(await problems(() => parse(text)), 'users[1].static_addresses[0]');
    expect(issue.file).toBe(fixture('users.yaml'));
    expect(issue.line).toBe(10);
    expect(issue.message).toContain('outside the tunnel network 198.18.0.0/28');
  });

  it('refuses users and users_file together', async () => {
    const issue = problemAt(await problems(() => parse(`users_file: users.yaml\n${users('x')}`)), 'users_file');
    expect(issue.message).toBe('expected either users or users_file, not both');
  });

  it('reports a missing users file as not found, naming it', async () => {
    const err = await thrown(() => parse('users_file: nope.yaml\n'), 'QG_ERR_CONFIG_NOT_FOUND');
    expect(err.message).toContain(fixture('nope.yaml'));
  });
});

describe('problems', () => {
  // Found by a random fast-check seed (test/fuzz/config.test.ts): a YAML complex key holding line breaks made
  // one problem span several lines, the later ones without the file name.
  it('renders a YAML complex key on one line, quoted and escaped, in a line that names the file', async () => {
    const err = await thrown(() => parse('listen:\n  ? |\n    a\n    b\n  : 3\n? [x, "y"]\n: 1\n'), 'QG_ERR_CONFIG_INVALID');
    const lines = err.message.split('\n').slice(1);
    expect(lines).toHaveLength(2);
    expect(lines).toContain(`  ${SOURCE}:2:5: listen["a\\nb\\n"]: unknown key "a\\nb\\n" (expected one of: address, port)`);
    expect(lines.find((l) => l.includes('[ x'))).toMatch(/^ {2}.+: \["\[ x, \\"y\\" \]"\]: unknown key "\[ x, \\"y\\" \]" \(expected one of: listen, /);
    expect(lines.every((l) => l.includes(SOURCE))).toBe(true);
  });

  it('reports a missing server file as not found, naming the path', async () => {
    const err = await thrown(() => loadServerConfig(fixture('missing.yaml')), 'QG_ERR_CONFIG_NOT_FOUND');
    expect(err.message).toContain(fixture('missing.yaml'));
  });

  it('reports YAML syntax errors with line and column', async () => {
    const issues = await problems(() => parse('listen:\n  port: 1\n  port: 2\n'));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file: SOURCE, line: 3, column: 3 });
    expect(issues[0]!.message).toMatch(/^YAML syntax error: Map keys must be unique/);
    const broken = await problems(() => parse('tunnel: [1, 2\nlimits: {\n'));
    expect(broken[0]!.line).toBeGreaterThan(0);
  });

  it('refuses a top level that is not a mapping', async () => {
    expect((await problems(() => parse('- a\n- b\n')))[0]!.message).toContain('expected a mapping');
  });

  it('names unknown keys, suggests the closest, and lists what is allowed', async () => {
    const issues = await problems(() => parse('limits:\n  idle_timout: 5m\nlog_levle: info\nfoo: 1\n'));
    const typo = problemAt(issues, 'limits.idle_timout');
    expect(typo.message).toContain('unknown key "idle_timout"; did you mean "idle_timeout"?');
    expect(typo.message).toContain('max_total_sessions');
    expect([typo.line, typo.column]).toEqual([2, 3]);
    expect(problemAt(issues, 'log_levle').message).toContain('did you mean "log_level"?');
    expect(problemAt(issues, 'foo').message).not.toContain('did you mean');
  });

  it('reports every problem, one line each with file:line:column: path: expectation, sorted by line', async () => {
    const text = `listen:
  port: 99999
limits:
  idle_timeout: 5 minutes
  at_limit: kill
tunnel:
  ipv4:
    network: 198.18.0.5/16
users:
  - name: alice
    password_hash: nothash
    bandwidth: 10
  - name: bob
`;
    const err = await thrown(() => parse(text), 'QG_ERR_CONFIG_INVALID');
    const lines = err.message.split('\n');
    expect(lines[0]).toBe('invalid configuration (7 problems):');
    expect(lines.slice(1)).toEqual([
      `  ${SOURCE}:2:9: listen.port: expected a number <= 65535, got 99999`,
      expect.stringMatching(new RegExp(`^  ${SOURCE}:4:17: limits\\.idle_timeout: invalid duration "5 minutes": .*expected .*"1h30m"`)),
      `  ${SOURCE}:5:13: limits.at_limit: expected one of "reject", "replace_oldest", got "kill"`,
      `  ${SOURCE}:8:14: tunnel.ipv4.network: "198.18.0.5/16" has host bits set; the network is 198.18.0.0/16`,
      expect.stringMatching(/:11:20: users\[0\]\.password_hash: expected a scrypt hash/),
      expect.stringMatching(/:12:16: users\[0\]\.bandwidth: invalid rate "10": a bare number is ambiguous/),
      expect.stringMatching(/:13:5: users\[1\]\.password_hash: required: expected a string$/),
    ]);
  });

  // [yaml, path, part of the expectation]
  const cases: [string, string, string][] = [
    ['tunnel: { ipv4: { network: 198.18.0.0/16, gateway: 198.19.0.1 } }', 'tunnel.ipv4.gateway', 'outside the tunnel network 198.18.0.0/16'],
    ['tunnel: { ipv4: { network: 198.18.0.0/16, gateway: 198.18.0.0 } }', 'tunnel.ipv4.gateway', 'the network address'],
    ['tunnel: { ipv4: { network: 198.18.0.0/16, gateway: 198.18.255.255 } }', 'tunnel.ipv4.gateway', 'the broadcast address'],
    ["tunnel: { ipv6: { network: '2001:db8::/64', gateway: '2001:db9::1' } }", 'tunnel.ipv6.gateway', 'outside the tunnel network'],
    ['tunnel: { ipv4: { network: 198.18.0.0/31 } }', 'tunnel.ipv4.network', 'prefix of /30 or shorter'],
    ["tunnel: { ipv4: { network: '2001:db8::/64' } }", 'tunnel.ipv4.network', 'expected an IPv4 address'],
    ['tunnel: { ipv4: { network: 198.18.0.0 } }', 'tunnel.ipv4.network', 'CIDR form'],
    ['tunnel: { ipv4: null, ipv6: null }', 'tunnel', 'at least one tunnel network'],
    ['tunnel: { mtu: 1000 }', 'tunnel.mtu', 'at least 1280 when IPv6 is on'],
    ['tunnel: { mtu: 9001 }', 'tunnel.mtu', 'expected a number <= 9000'],
    ['tunnel: { ipv6: null, mtu: 500 }', 'tunnel.mtu', 'expected a number >= 576'],
    ["tunnel: { ipv6: null, routes: ['::/0'] }", 'tunnel.routes[0]', 'route ::/0 is IPv6 but the tunnel has no IPv6 network'],
    ['tunnel: { routes: [198.18.2.3/15] }', 'tunnel.routes[0]', 'host bits set; the network is 198.18.0.0/15'],
    ['tunnel: { dns: [dns.example] }', 'tunnel.dns[0]', 'expected an IPv4 or IPv6 address'],
    ['tunnel: { name: this-name-is-too-long }', 'tunnel.name', 'interface name of 1 to 15'],
    ['limits: { idle_timeout: 10s }', 'limits.idle_timeout', 'expected more than keepalive_interval (15s), got 10s'],
    ['limits: { idle_timeout: 500ms }', 'limits.idle_timeout', 'at least 1s'],
    ['limits: { max_sessions_per_user: 0 }', 'limits.max_sessions_per_user', 'expected a number >= 1, got 0'],
    ['limits: { session_timeout: 30 }', 'limits.session_timeout', 'bare number is ambiguous'],
    ['transports: { h2: false, h3: off, quic: off }', 'transports', 'at least one transport'],
    ['transports: { h3: auto, quic: auto }', 'transports.h3', 'expected h3 off while quic is auto'],
    ['transports: { h2: yes }', 'transports.h2', 'expected true or false, got "yes"'],
    ['tls: { cert_file: c.pem }', 'tls.key_file', 'expected key_file together with cert_file'],
    ['admin: { enabled: true }', 'admin.token', 'required when admin.enabled is true'],
    ['admin: { token: short }', 'admin.token', 'at least 16 characters'],
    ["admin: { token: 'abcdefghijklmnopq', port: 4433, listen: 0.0.0.0 }", 'admin.port', 'already used by listen.port'],
    ['default_bandwidth: 0 Mbit/s', 'default_bandwidth', 'above zero'],
    ['default_bandwidth: 10 KB/s', 'default_bandwidth', 'prefix "K" is ambiguous'],
    ['history: { retention_days: -1 }', 'history.retention_days', 'expected a number >= 0'],
    ['log_level: verbose', 'log_level', 'expected one of "trace", "debug", "info", "warn", "error"'],
  ];
  it.each(cases)('%s => %s', async (text, path, expectation) => {
    const issue = problemAt(await problems(() => parse(text)), path);
    expect(issue.file).toBe(SOURCE);
    expect(issue.message).toContain(expectation);
  });

  it.each([
    ['burst: 1.5 B', 'users[0].burst', 'not a whole number of bytes'],
    ['max_sessions: 1.5', 'users[0].max_sessions', 'expected a whole number, got 1.5'],
    ['quota: { bytes: 1 GB, period: week }', 'users[0].quota.period', 'expected one of "day", "month"'],
    ['quota: { bytes: 1 GB, period: day, action: throttle }', 'users[0].quota.throttle_rate', 'required when action is throttle'],
    ['quota: { bytes: 1 GB, period: day, throttle_rate: 1 Mbit/s }', 'users[0].quota.throttle_rate', 'only allowed when action is throttle'],
    ['static_addresses: [198.18.0.1]', 'users[0].static_addresses[0]', 'the gateway address'],
    ['static_addresses: [198.18.0.0]', 'users[0].static_addresses[0]', 'the network address'],
    ['static_addresses: [198.18.255.255]', 'users[0].static_addresses[0]', 'the broadcast address'],
    ['static_addresses: [10.0.0.1]', 'users[0].static_addresses[0]', 'outside the tunnel network 198.18.0.0/16'],
    ["static_addresses: ['2001:db8:4711::']", 'users[0].static_addresses[0]', 'the network address'],
    ['static_addresses: [198.18.0.9/32]', 'users[0].static_addresses[0]', 'without prefix'],
    ['passwrd_hash: x', 'users[0].passwrd_hash', 'did you mean "password_hash"?'],
  ])('user %s => %s', async (extra, path, expectation) => {
    const text = `users:\n  - name: u1\n    password_hash: '${hash}'\n    ${extra}\n`;
    expect(problemAt(await problems(() => parse(text)), path).message).toContain(expectation);
  });

  it('refuses a static address of a family that is off', async () => {
    const text = `tunnel: { ipv6: null }\nusers:\n  - { name: a, password_hash: '${hash}', static_addresses: ['2001:db8:4711::5'] }\n`;
    expect(problemAt(await problems(() => parse(text)), 'users[0].static_addresses[0]').message).toContain('has no IPv6 network');
  });

  it('refuses duplicate user names (ignoring case) and shared static addresses', async () => {
    const text = `users:
  - { name: alice, password_hash: '${hash}', static_addresses: [198.18.0.7] }
  - { name: bob, password_hash: '${hash}', static_addresses: [198.18.0.7] }
  - { name: Alice, password_hash: '${hash}' }
`;
    const issues = await problems(() => parse(text));
    expect(problemAt(issues, 'users[2].name').message).toContain('duplicate user name "Alice" (also users[0])');
    expect(problemAt(issues, 'users[1].static_addresses[0]').message).toContain('already reserved for user "alice"');
    expect(issues).toHaveLength(2);
  });

  it('does not echo an admin token into the message', async () => {
    const issue = problemAt(await problems(() => parse('admin: { token: hunter2 }')), 'admin.token');
    expect(issue.message).not.toContain('hunter2');
  });

  it('refuses a bad user name', async () => {
    const text = `users:\n  - { name: 'bad name', password_hash: '${hash}' }\n`;
    expect(problemAt(await problems(() => parse(text)), 'users[0].name').message).toContain('expected a user name');
  });
});

describe('fleet', () => {
  it('is null without a fleet block, and the gateway id is the host name', async () => {
    const config = await parse('');
    expect(config.fleet).toBeNull();
    expect(config.gatewayId).toBe((await import('node:os')).hostname());
  });

  it('reads the block with its defaults', async () => {
    const config = await parse('fleet:\n  gateway_id: gw-a\n  redis_url: redis://192.0.2.9:6379/0\n  lease_interval: 50ms\n');
    expect(config.gatewayId).toBe('gw-a');
    expect(config.fleet).toEqual({ redisUrl: 'redis://192.0.2.9:6379/0', keyPrefix: 'quicgate:', leaseIntervalMs: 50, fallbackShare: 0.5, sessionLeaseMs: 15_000, addressReserve: 16 });
  });

  it('names the field and what was expected', async () => {
    const issues = await problems(() => parse('fleet:\n  gateway_id: "gw a"\n  redis_url: http://x/\n  lease_interval: 5ms\n  fallback_share: 0\n'));
    expect(problemAt(issues, 'fleet.gateway_id')).toMatchObject({ line: 2, message: expect.stringContaining('expected 1-63 letters') });
    expect(problemAt(issues, 'fleet.redis_url').message).toContain('expected a redis:// or rediss:// URL');
    expect(problemAt(issues, 'fleet.lease_interval').message).toContain('between 20ms and 1s');
    expect(problemAt(issues, 'fleet.fallback_share').line).toBe(5);
    const missing = await problems(() => parse('fleet:\n  gateway_id: gw-a\n'));
    expect(problemAt(missing, 'fleet.redis_url').message).toMatch(/expected a URL/);
  });
});

describe('history backend', () => {
  it('is SQLite by default, with no postgres block', async () => {
    const config = await parse('');
    expect(config.history).toMatchObject({ backend: 'sqlite', postgres: null });
  });

  it('reads history.postgres with its defaults', async () => {
    const config = await parse('history:\n  backend: postgres\n  postgres:\n    url: postgres://qg:pw@192.0.2.20:5432/history\n    query_timeout: 10s\n');
    expect(config.history.backend).toBe('postgres');
    expect(config.history.postgres).toEqual({ url: 'postgres://qg:pw@192.0.2.20:5432/history', poolSize: 4, connectTimeoutMs: 5000, queryTimeoutMs: 10_000 });
  });

  it('names the field and what was expected, and never repeats a password', async () => {
    const missing = await problems(() => parse('history:\n  backend: postgres\n'));
    expect(problemAt(missing, 'history.postgres').message).toContain('required when history.backend is postgres');
    const bad = await problems(() => parse('history:\n  backend: mysql\n  postgres:\n    url: mysql://u:hunter22@db/x\n    pool_size: 0\n'));
    expect(problemAt(bad, 'history.backend').line).toBe(2);
    const url = problemAt(bad, 'history.postgres.url');
    expect(url).toMatchObject({ line: 4, message: expect.stringContaining('expected a postgres:// or postgresql:// URL') });
    expect(url.message).not.toContain('hunter22');
    expect(problemAt(bad, 'history.postgres.pool_size').line).toBe(5);
    const notUrl = await problems(() => parse('history:\n  postgres:\n    url: "hunter22 is not a url"\n'));
    expect(problemAt(notUrl, 'history.postgres.url').message).not.toContain('hunter22');
  });
});
