import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadUsersFile, parseUsersText, saveUsersFile } from '../../src/config/load.js';
import { hashPassword } from '../../src/config/password.js';
import type { UserConfig } from '../../src/config/types.js';
import { fixture, problemAt, problems, thrown } from './helpers.js';

let dir = '';
let hash = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'qg-users-'));
  hash = await hashPassword('pw', { ln: 4, r: 8, p: 1 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function copyOfFixture(name: string): string {
  const target = join(dir, `${Math.random().toString(36).slice(2)}-${name}`);
  copyFileSync(fixture(name), target);
  return target;
}

function newUser(name: string, extra: Partial<UserConfig> = {}): UserConfig {
  return { name, passwordHash: hash, bandwidth: null, burst: null, maxSessions: null, staticAddresses: [], disabled: false, quota: null, ...extra };
}

describe('loadUsersFile', () => {
  it('reads users with units converted', async () => {
    const users = await loadUsersFile(fixture('users.yaml'));
    expect(users.map((u) => [u.name, u.bandwidth, u.burst, u.staticAddresses])).toEqual([
      ['alice', 2_500_000, 65_536, []],
      ['bob', null, null, ['198.18.0.20']],
    ]);
  });

  it('gives users without bandwidth the default passed in', async () => {
    const users = await loadUsersFile(fixture('users.yaml'), { defaultBandwidth: 1000 });
    expect(users[1]!.bandwidth).toBe(1000);
  });

  it('reports a missing file as not found and problems with the users file named', async () => {
    expect((await thrown(() => loadUsersFile(join(dir, 'none.yaml')), 'QG_ERR_CONFIG_NOT_FOUND')).message).toContain('none.yaml');
    const issues = await problems(() => loadUsersFile(fixture('bad-users.yaml')));
    expect(issues.every((i) => i.file === fixture('bad-users.yaml'))).toBe(true);
    expect(issues.map((i) => i.path)).toEqual(['users[0].bandwidth', 'users[1].bandwidth']);
  });

  it('refuses a file without users: and duplicate names', async () => {
    expect(problemAt(await problems(() => parseUsersText('', 'u.yaml')), 'users').message).toBe('required: expected a list');
    const dup = `users:\n  - { name: a, password_hash: '${hash}' }\n  - { name: A, password_hash: '${hash}' }\n`;
    expect(problemAt(await problems(() => parseUsersText(dup, 'u.yaml')), 'users[1].name').message).toContain('duplicate user name');
  });
});

describe('saveUsersFile', () => {
  it('saving what was loaded leaves the file byte for byte the same', async () => {
    const file = copyOfFixture('users.yaml');
    const before = readFileSync(file, 'utf8');
    await saveUsersFile(file, await loadUsersFile(file));
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('edits only what changed and keeps comments', async () => {
    const file = copyOfFixture('users.yaml');
    const [alice, bob] = await loadUsersFile(file);
    await saveUsersFile(file, [
      { ...alice!, bandwidth: 1_500_000 },
      { ...bob!, disabled: true, staticAddresses: [] },
      newUser('carol', { bandwidth: 524_288, burst: 1_500_000, maxSessions: 2, quota: { bytes: 10 * 1024 ** 3, period: 'month', action: 'throttle', throttleRate: 125_000 } }),
    ]);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('# Users for the loader tests.');
    expect(text).toContain('# alice keeps a comment');
    expect(text).toContain('bandwidth: 12 Mbit/s');
    expect(text).toContain('burst: 64 KiB'); // untouched spelling
    expect(text).not.toContain('static_addresses');
    expect(text).toContain('bandwidth: 512 KiB/s');
    expect(text).toContain('throttle_rate: 1 Mbit/s');
    const again = await loadUsersFile(file);
    expect(again.map((u) => u.name)).toEqual(['alice', 'bob', 'carol']);
    expect(again[0]!.bandwidth).toBe(1_500_000);
    expect(again[1]).toMatchObject({ disabled: true, staticAddresses: [] });
    expect(again[2]).toEqual(newUser('carol', { bandwidth: 524_288, burst: 1_500_000, maxSessions: 2, quota: { bytes: 10 * 1024 ** 3, period: 'month', action: 'throttle', throttleRate: 125_000 } }));
  });

  it('removes users left out and writes unlimited explicitly for new users', async () => {
    const file = copyOfFixture('users.yaml');
    await saveUsersFile(file, [newUser('zed')], { defaultBandwidth: 1000 });
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('name: alice');
    expect(text).toContain('bandwidth: unlimited');
    expect(await loadUsersFile(file, { defaultBandwidth: 1000 })).toEqual([newUser('zed')]);
  });

  it('creates a new file readable by its owner only', async () => {
    const file = join(dir, 'fresh.yaml');
    await saveUsersFile(file, [newUser('ann', { bandwidth: 2_500_000, staticAddresses: ['198.18.0.5'] })]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await loadUsersFile(file)).toEqual([newUser('ann', { bandwidth: 2_500_000, staticAddresses: ['198.18.0.5'] })]);
  });

  it('refuses to write users that would not load, leaving the file as it was', async () => {
    const file = copyOfFixture('users.yaml');
    const before = readFileSync(file, 'utf8');
    const issues = await problems(() => saveUsersFile(file, [newUser('bad name'), newUser('x', { passwordHash: 'plain' })]));
    expect(issues.map((i) => i.path)).toEqual(['users[0].name', 'users[1].password_hash']);
    const dup = await problems(() => saveUsersFile(file, [newUser('x'), newUser('x')]));
    expect(dup[0]!.path).toBe('users[1].name');
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('refuses to rewrite an existing file that does not load', async () => {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'users: [\n');
    expect((await problems(() => saveUsersFile(file, [newUser('x')])))[0]!.message).toContain('YAML syntax error');
    expect(readFileSync(file, 'utf8')).toBe('users: [\n');
  });
});
