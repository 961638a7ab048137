import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadClientConfig, OVERRIDES_SOURCE } from '../../src/config/client.js';
import { fixture, problemAt, problems, thrown } from './helpers.js';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'qg-client-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function clientFile(text: string): string {
  const file = join(dir, `${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, text);
  return file;
}

describe('loadClientConfig', () => {
  it('reads a file, resolves paths relative to it and fills defaults', async () => {
    const c = await loadClientConfig(fixture('client.yaml'));
    expect(c).toEqual({
      source: fixture('client.yaml'),
      server: 'https://gw.example.net:8443/',
      user: 'alice',
      password: 'alice-example', // from alice.password, trailing newline dropped
      transport: 'h2',
      caFile: fixture('ca.pem'),
      pinnedCertHashes: [],
      tunName: 'qgc0',
      tunOffload: true,
      setDns: false,
      reconnect: { initialMs: 500, maxMs: 60_000, maxAttempts: null },
      deadAfterMissedKeepalives: 3,
      logLevel: 'info',
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('lets overrides win key by key, merging reconnect', async () => {
    const c = await loadClientConfig(fixture('client.yaml'), {
      password: 'from-flag',
      transport: 'auto',
      reconnectMax: '2m',
      reconnectMaxAttempts: '5',
      deadAfterMissedKeepalives: '4',
      caFile: 'other-ca.pem',
      setDns: true,
    });
    expect(c.password).toBe('from-flag'); // replaces the file's password_file
    expect(c.transport).toBe('auto');
    expect(c.reconnect).toEqual({ initialMs: 500, maxMs: 120_000, maxAttempts: 5 });
    expect(c.deadAfterMissedKeepalives).toBe(4);
    expect(c.caFile).toBe(resolve('other-ca.pem')); // relative to the working directory
    expect(c.setDns).toBe(true);
  });

  it('works from overrides alone', async () => {
    const c = await loadClientConfig(null, { server: 'https://[::1]/', user: 'bob', password: 'pw', reconnectMaxAttempts: 'unlimited' });
    expect(c.source).toBe('<defaults>');
    expect(c.server).toBe('https://[::1]:443/');
    expect(c.reconnect.maxAttempts).toBeNull();
    expect(c.caFile).toBeNull();
  });

  it('normalises pinned certificate hashes', async () => {
    const hex = 'AB'.repeat(32);
    const colons = Array.from({ length: 32 }, () => 'cd').join(':');
    const c = await loadClientConfig(clientFile(`server: https://gw:1/\nuser: a\npassword: p\npinned_cert_hashes: ['${hex}', '${colons}']\n`));
    expect(c.pinnedCertHashes).toEqual(['ab'.repeat(32), 'cd'.repeat(32)]);
  });

  it('names every missing required value', async () => {
    const file = clientFile('transport: h3\n');
    const issues = await problems(() => loadClientConfig(file));
    expect(issues.map((i) => [i.file, i.path])).toEqual([
      [file, 'server'],
      [file, 'user'],
      [file, 'password'],
    ]);
    expect(issues[0]!.message).toContain('required');
  });

  it('reports problems of the file and of the overrides, each with its source', async () => {
    const file = clientFile('server: http://gw/\nuser: a\npassword: p\ntun_nam: x\nreconnect: { initial: 5 }\n');
    const issues = await problems(() => loadClientConfig(file, { transport: 'tcp', pinnedCertHashes: ['abc'] }));
    expect(problemAt(issues, 'server')).toMatchObject({ file, line: 1, message: 'expected an https:// URL, got "http://gw/"' });
    expect(problemAt(issues, 'tun_nam').message).toContain('did you mean "tun_name"?');
    expect(problemAt(issues, 'reconnect.initial').message).toContain('bare number is ambiguous');
    expect(problemAt(issues, 'transport')).toMatchObject({ file: OVERRIDES_SOURCE, message: 'expected one of "auto", "quic", "h3", "h2", got "tcp"' });
    expect(problemAt(issues, 'pinned_cert_hashes[0]').message).toContain('64 hex digits');
  });

  it.each([
    ['server: https://gw/path\nuser: a\npassword: p\n', 'server', 'no user, path, query or fragment'],
    ['server: https://gw/\nuser: a\npassword: p\npassword_file: f\n', 'password_file', 'either password or password_file'],
    ['server: https://gw/\nuser: a\npassword_file: nope.password\n', 'password_file', 'cannot read password file'],
    ['server: https://gw/\nuser: a\npassword: p\nreconnect: { initial: 2m, max: 1m }\n', 'reconnect.initial', 'at most reconnect.max (1m), got 2m'],
    ['server: https://gw/\nuser: a\npassword: p\ndead_after_missed_keepalives: 0\n', 'dead_after_missed_keepalives', '>= 1'],
    ['server: https://gw/\nuser: a\npassword: p\nreconnect: { max_attempts: -1 }\n', 'reconnect.max_attempts', 'expected "unlimited" or a whole number >= 0, got -1'],
  ])('%j => %s', async (text, path, expectation) => {
    expect(problemAt(await problems(() => loadClientConfig(clientFile(text))), path).message).toContain(expectation);
  });

  it('refuses an empty password file', async () => {
    writeFileSync(join(dir, 'empty.password'), '\n');
    const file = clientFile('server: https://gw/\nuser: a\npassword_file: empty.password\n');
    expect(problemAt(await problems(() => loadClientConfig(file)), 'password_file').message).toContain('is empty');
  });

  it('reports a missing file as not found', async () => {
    expect((await thrown(() => loadClientConfig(join(dir, 'none.yaml')), 'QG_ERR_CONFIG_NOT_FOUND')).message).toContain('none.yaml');
  });
});

describe('secrets in messages', () => {
  it('never echoes a password or token value', async () => {
    const issues = await problems(() => loadClientConfig(null, { server: 'https://gw/', user: 'a', password: 'x'.repeat(0) }));
    expect(problemAt(issues, 'password').message).not.toContain('got');
    const file = clientFile('server: https://gw/\nuser: a\npassword: 123456789\n');
    const typed = problemAt(await problems(() => loadClientConfig(file)), 'password');
    expect(typed.message).toBe('expected a string');
  });
});
