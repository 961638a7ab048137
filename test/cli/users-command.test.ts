import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT_USAGE, EXIT_RUNTIME } from '../../src/cli/fail.js';
import { usersSet } from '../../src/cli/users-command.js';
import { loadUsersFile } from '../../src/config/load.js';
import { verifyPassword } from '../../src/config/password.js';
import { parseRate } from '../../src/config/units.js';
import { isQuicgateError } from '../../src/errors.js';
import { FakeTerminal, operatorProgram, run, testIo, type TestIo } from './cli-io.js';

const EXAMPLE_USERS = join(import.meta.dirname, '../../config/users.example.yaml');

let dir: string;
let usersFile: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'qg-users-'));
  usersFile = join(dir, 'users.yaml');
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function expectFailure(io: TestIo, code: string, exitCode: number): string {
  expect(io.failures).toHaveLength(1);
  const failure = io.failures[0]!;
  expect(isQuicgateError(failure.error) ? failure.error.code : failure.error).toBe(code);
  expect(failure.exitCode).toBe(exitCode);
  expect(failure.line).not.toContain('\n');
  expect(io.err().endsWith(`quicgate: ${failure.line}\n`)).toBe(true);
  return failure.line;
}

function expectSuccess(io: TestIo): void {
  expect(io.failures.map((f) => f.line)).toEqual([]);
}

async function addUser(name: string, password: string, ...flags: string[]): Promise<TestIo> {
  const io = testIo({ input: `${password}\n` });
  await run(io, 'users', 'add', name, '--users-file', usersFile, ...flags);
  return io;
}

async function userNamed(name: string, defaultBandwidth: number | null = null) {
  const users = await loadUsersFile(usersFile, { defaultBandwidth });
  return users.find((u) => u.name === name);
}

describe('users add', () => {
  it('creates the users file with a verifiable hash of the piped password and reminds about reload', async () => {
    const io = await addUser('alice', 'correct horse battery', '--bandwidth', '20Mbit/s');
    expectSuccess(io);
    const alice = await userNamed('alice');
    expect(alice?.bandwidth).toBe(parseRate('20 Mbit/s'));
    expect(await verifyPassword('correct horse battery', alice!.passwordHash)).toBe(true);
    expect(await verifyPassword('wrong password', alice!.passwordHash)).toBe(false);
    expect(statSync(usersFile).mode & 0o777).toBe(0o600);
    expect(io.out()).toContain(`added user alice (bandwidth 20 Mbit/s) to ${usersFile}`);
    expect(io.out()).toMatch(/reload.*SIGHUP.*quicgate reload/);
    expect(readFileSync(usersFile, 'utf8')).not.toContain('correct horse');
  });

  it('stores every option, canonicalising addresses', async () => {
    const io = await addUser('carol', 'carol-password', '--bandwidth', '1.5MB/s', '--burst', '256KiB', '--max-sessions', '2', '--disabled', '--static', '198.18.0.10', '2001:DB8:4711:0::10');
    expectSuccess(io);
    expect(await userNamed('carol')).toMatchObject({
      bandwidth: 1_500_000,
      burst: 256 * 1024,
      maxSessions: 2,
      staticAddresses: ['198.18.0.10', '2001:db8:4711::10'],
      disabled: true,
    });
  });

  it('defaults to unlimited without a server config', async () => {
    expectSuccess(await addUser('dan', 'dan-password'));
    expect((await userNamed('dan'))?.bandwidth).toBeNull();
  });

  it('keeps the comments and the other users of an existing file', async () => {
    copyFileSync(EXAMPLE_USERS, usersFile);
    const before = await loadUsersFile(usersFile);
    expectSuccess(await addUser('erin', 'erin-password', '--bandwidth', 'unlimited'));
    const text = readFileSync(usersFile, 'utf8');
    expect(text).toContain('# alice / password "alice-example" (example only)');
    expect(text).toContain('EXAMPLE ONLY');
    const after = await loadUsersFile(usersFile);
    expect(after.slice(0, before.length)).toEqual(before);
    expect(after.at(-1)?.name).toBe('erin');
  });

  it('refuses a duplicate name, ignoring case, and leaves the file alone', async () => {
    copyFileSync(EXAMPLE_USERS, usersFile);
    const original = readFileSync(usersFile, 'utf8');
    const io = await addUser('Alice', 'another-password');
    expect(expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE)).toContain('user alice already exists');
    expect(readFileSync(usersFile, 'utf8')).toBe(original);
  });

  it.each([
    ['--bandwidth', 'fast', 'QG_ERR_UNIT_INVALID'],
    ['--bandwidth', '10 mbps', 'QG_ERR_UNIT_INVALID'],
    ['--bandwidth', '0 bit/s', 'QG_ERR_UNIT_INVALID'],
    ['--burst', '64 Kb', 'QG_ERR_UNIT_INVALID'],
    ['--burst', '0.5 B', 'QG_ERR_UNIT_INVALID'],
    ['--max-sessions', '0', 'QG_ERR_CONFIG_INVALID'],
    ['--max-sessions', 'many', 'QG_ERR_CONFIG_INVALID'],
    ['--static', '198.18.0.0/24', 'QG_ERR_CONFIG_INVALID'],
    ['--static', 'not-an-address', 'QG_ERR_CONFIG_INVALID'],
  ])('refuses %s %s with %s (exit 2) before asking for a password', async (flag, value, code) => {
    const stdin = new FakeTerminal();
    const io = testIo({ stdin });
    await run(io, 'users', 'add', 'frank', '--users-file', usersFile, flag, value);
    expect(expectFailure(io, code, EXIT_USAGE)).toContain(flag);
    expect(stdin.rawModes).toEqual([]); // never prompted
    expect(existsSync(usersFile)).toBe(false);
  });

  it('refuses an invalid user name', async () => {
    for (const name of ['bad name', '.hidden', 'x'.repeat(65)]) {
      const io = await addUser(name, 'password-123');
      expect(expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE)).toContain('invalid user name');
    }
  });

  it('refuses a missing, empty or short password from stdin', async () => {
    for (const input of ['', '\n', 'short\n']) {
      const io = testIo({ input });
      await run(io, 'users', 'add', 'gina', '--users-file', usersFile);
      expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE);
    }
    expect(existsSync(usersFile)).toBe(false);
  });

  it('takes only the first line of stdin, without its CR LF', async () => {
    const io = testIo({ input: 'first-line-pw\r\nsecond-line\n' });
    await run(io, 'users', 'add', 'hank', '--users-file', usersFile, '--password-stdin');
    expectSuccess(io);
    expect(await verifyPassword('first-line-pw', (await userNamed('hank'))!.passwordHash)).toBe(true);
  });

  it('on a terminal asks twice in raw mode, echoing nothing', async () => {
    const stdin = new FakeTerminal();
    const io = testIo({ stdin });
    const done = run(io, 'users', 'add', 'ivy', '--users-file', usersFile);
    stdin.type('ivy-passwordX\u007f\r'); // backspace removes the X
    stdin.type('ivy-password\r');
    await done;
    expectSuccess(io);
    expect(stdin.rawModes).toEqual([true, false]);
    expect(io.err()).toBe('New password: \nRepeat password: \n');
    expect(await verifyPassword('ivy-password', (await userNamed('ivy'))!.passwordHash)).toBe(true);
  });

  it('on a terminal refuses two different passwords and writes nothing', async () => {
    const stdin = new FakeTerminal();
    const io = testIo({ stdin });
    const done = run(io, 'users', 'add', 'jack', '--users-file', usersFile);
    stdin.type('jack-password-1\rjack-password-2\r');
    await done;
    expect(expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE)).toContain('do not match');
    expect(stdin.rawModes).toEqual([true, false]);
    expect(existsSync(usersFile)).toBe(false);
  });

  it('fails with a clear message when the directory does not exist', async () => {
    const io = testIo({ input: 'password-123\n' });
    await run(io, 'users', 'add', 'kim', '--users-file', join(dir, 'missing', 'users.yaml'));
    expect(expectFailure(io, 'QG_ERR_CONFIG_NOT_FOUND', EXIT_USAGE)).toContain('does not exist');
  });
});

describe('users passwd', () => {
  it("changes only that user's hash", async () => {
    copyFileSync(EXAMPLE_USERS, usersFile);
    const before = await loadUsersFile(usersFile);
    const io = testIo({ input: 'new-bob-password\n' });
    await run(io, 'users', 'passwd', 'bob', '--users-file', usersFile);
    expectSuccess(io);
    const after = await loadUsersFile(usersFile);
    const bob = after.find((u) => u.name === 'bob')!;
    expect(await verifyPassword('new-bob-password', bob.passwordHash)).toBe(true);
    expect(await verifyPassword('bob-example', bob.passwordHash)).toBe(false);
    expect(after.filter((u) => u.name !== 'bob')).toEqual(before.filter((u) => u.name !== 'bob'));
    expect({ ...bob, passwordHash: '' }).toEqual({ ...before.find((u) => u.name === 'bob')!, passwordHash: '' });
    expect(io.out()).toContain('changed the password of bob');
  });

  it('refuses an unknown user before asking, with a hint for a case mismatch', async () => {
    copyFileSync(EXAMPLE_USERS, usersFile);
    const io = testIo({ input: 'whatever-password\n' });
    await run(io, 'users', 'passwd', 'BOB', '--users-file', usersFile);
    expect(expectFailure(io, 'QG_ERR_USER_NOT_FOUND', EXIT_RUNTIME)).toContain('did you mean bob?');
  });
});

describe('users set', () => {
  beforeEach(() => copyFileSync(EXAMPLE_USERS, usersFile));

  it('changes the given settings only and says what changed', async () => {
    const before = (await userNamed('carol'))!;
    const io = testIo();
    await run(io, 'users', 'set', 'carol', '--users-file', usersFile, '--bandwidth', '50Mbit/s', '--burst', 'default', '--disable');
    expectSuccess(io);
    const after = (await userNamed('carol'))!;
    expect(after).toEqual({ ...before, bandwidth: parseRate('50 Mbit/s'), burst: null, disabled: true });
    expect(io.out()).toContain('bandwidth 12 Mbit/s -> 50 Mbit/s, burst 256 KiB -> default, disabled');
    expect(io.out()).toContain('ends their live sessions on reload');
    expect(readFileSync(usersFile, 'utf8')).toContain('# carol / password "carol-example"');
  });

  it('enables, replaces and removes static addresses, and resets max sessions', async () => {
    let io = testIo();
    await run(io, 'users', 'set', 'dave', '--users-file', usersFile, '--enable', '--static', '198.18.0.20', '--max-sessions', '3');
    expectSuccess(io);
    expect(await userNamed('dave')).toMatchObject({ disabled: false, staticAddresses: ['198.18.0.20'], maxSessions: 3 });
    io = testIo();
    await run(io, 'users', 'set', 'dave', '--users-file', usersFile, '--no-static', '--max-sessions', 'default');
    expectSuccess(io);
    expect(await userNamed('dave')).toMatchObject({ staticAddresses: [], maxSessions: null });
  });

  it('reports settings that are already so without rewriting the file', async () => {
    const original = readFileSync(usersFile, 'utf8');
    const io = testIo();
    await run(io, 'users', 'set', 'alice', '--users-file', usersFile, '--bandwidth', '20 Mbit/s');
    expectSuccess(io);
    expect(io.out()).toContain('already has these settings');
    expect(readFileSync(usersFile, 'utf8')).toBe(original);
  });

  it('refuses nothing to change, contradictions, unknown users and bad units', async () => {
    let io = testIo();
    await run(io, 'users', 'set', 'alice', '--users-file', usersFile);
    expect(expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE)).toContain('nothing to change');

    io = testIo();
    await usersSet('alice', { usersFile, enable: true, disable: true }, io).catch((err: unknown) => io.fail(err));
    expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE);

    io = testIo();
    await run(io, 'users', 'set', 'nobody', '--users-file', usersFile, '--disable');
    expectFailure(io, 'QG_ERR_USER_NOT_FOUND', EXIT_RUNTIME);

    io = testIo();
    await run(io, 'users', 'set', 'alice', '--users-file', usersFile, '--bandwidth', '10 KB/s');
    expect(expectFailure(io, 'QG_ERR_UNIT_INVALID', EXIT_USAGE)).toMatch(/^QG_ERR_UNIT_INVALID: --bandwidth: invalid rate "10 KB\/s"/);
  });

  it('lets commander refuse --enable with --disable on the command line', async () => {
    const io = testIo();
    const { program, help } = operatorProgram(io);
    await expect(program.parseAsync(['users', 'set', 'alice', '--users-file', usersFile, '--enable', '--disable'], { from: 'user' })).rejects.toMatchObject({
      code: 'commander.conflictingOption',
    });
    expect(help()).toContain('cannot be used with');
  });
});

describe('users remove', () => {
  it('removes the user and keeps the rest', async () => {
    copyFileSync(EXAMPLE_USERS, usersFile);
    const io = testIo();
    await run(io, 'users', 'remove', 'dave', '--users-file', usersFile);
    expectSuccess(io);
    expect((await loadUsersFile(usersFile)).map((u) => u.name)).toEqual(['alice', 'bob', 'carol']);
    expect(io.out()).toContain('removed user dave');
    expect(io.out()).toContain('on reload');
  });

  it('refuses an unknown user', async () => {
    copyFileSync(EXAMPLE_USERS, usersFile);
    const io = testIo();
    await run(io, 'users', 'remove', 'zed', '--users-file', usersFile);
    expectFailure(io, 'QG_ERR_USER_NOT_FOUND', EXIT_RUNTIME);
  });
});

describe('users list', () => {
  beforeEach(() => copyFileSync(EXAMPLE_USERS, usersFile));

  it('prints a table in human units', async () => {
    const io = testIo();
    await run(io, 'users', 'list', '--users-file', usersFile);
    expectSuccess(io);
    const lines = io.out().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+BANDWIDTH\s+BURST\s+MAX SESSIONS\s+STATIC\s+DISABLED\s+QUOTA$/);
    expect(lines).toHaveLength(5);
    expect(lines[1]).toMatch(/^alice\s+20 Mbit\/s\s+default\s+default\s+-\s+no\s+-$/);
    expect(lines[2]).toMatch(/^bob\s+unlimited\s+.*100 GiB\/month, then 1 Mbit\/s$/);
    expect(lines[3]).toMatch(/^carol\s+12 Mbit\/s\s+256 KiB\s+1\s+198\.18\.0\.10,2001:db8:4711::10\s+no/);
    expect(lines[4]).toMatch(/^dave\s+10 Mbit\/s\s.*\syes\s/);
  });

  it('prints JSON without password hashes', async () => {
    const io = testIo();
    await run(io, 'users', 'list', '--users-file', usersFile, '--json');
    expectSuccess(io);
    const parsed = JSON.parse(io.out()) as { file: string; users: Record<string, unknown>[] };
    expect(parsed.file).toBe(usersFile);
    expect(parsed.users.map((u) => u.name)).toEqual(['alice', 'bob', 'carol', 'dave']);
    expect(parsed.users[2]).toEqual({
      name: 'carol',
      bandwidth: 1_500_000,
      burst: 262_144,
      maxSessions: 1,
      staticAddresses: ['198.18.0.10', '2001:db8:4711::10'],
      disabled: false,
      quota: null,
    });
    expect(io.out()).not.toContain('scrypt');
  });

  it('fails with QG_ERR_CONFIG_NOT_FOUND for a missing file', async () => {
    const io = testIo();
    await run(io, 'users', 'list', '--users-file', join(dir, 'nope.yaml'));
    expectFailure(io, 'QG_ERR_CONFIG_NOT_FOUND', EXIT_USAGE);
  });
});

describe('with a server config', () => {
  const serverYaml = (extra: string): string =>
    `tunnel:\n  ipv4:\n    network: 198.19.0.0/24\n  ipv6: null\ndefault_bandwidth: 5 Mbit/s\nlimits:\n  max_sessions_per_user: 7\n${extra}`;

  it("edits the config's users_file (via $QUICGATE_CONFIG too) with its default bandwidth", async () => {
    const config = join(dir, 'server.yaml');
    writeFileSync(config, serverYaml('users_file: users.yaml\n'));
    let io = testIo({ input: 'password-123\n' });
    await run(io, 'users', 'add', 'lou', '--config', config);
    expectSuccess(io);
    expect((await userNamed('lou', null))?.bandwidth).toBe(parseRate('5 Mbit/s'));

    io = testIo({ env: { QUICGATE_CONFIG: config } });
    await run(io, 'users', 'list');
    expectSuccess(io);
    expect(io.out()).toMatch(/^lou\s+5 Mbit\/s\s+default\s+default \(7\)/m);
  });

  it('refuses static addresses the gateway would refuse', async () => {
    const config = join(dir, 'server.yaml');
    writeFileSync(config, serverYaml('users_file: users.yaml\n'));
    expectSuccess(await addUser('max', 'password-123', '--config', config, '--static', '198.19.0.5'));

    for (const [address, why] of [
      ['198.18.0.10', 'outside the tunnel network'],
      ['198.19.0.1', 'the gateway address'],
      ['198.19.0.5', 'already reserved for user "max"'],
      ['2001:db8::5', 'no IPv6 network'],
    ] as const) {
      const stdin = new FakeTerminal();
      const io = testIo({ stdin });
      await run(io, 'users', 'add', 'ned', '--config', config, '--static', address);
      expect(expectFailure(io, 'QG_ERR_ADDRESS_UNAVAILABLE', EXIT_USAGE)).toContain(why);
      expect(stdin.rawModes).toEqual([]);
    }
    expect((await loadUsersFile(usersFile)).map((u) => u.name)).toEqual(['max']);
  });

  it('explains when the config keeps its users inline', async () => {
    const config = join(dir, 'server.yaml');
    writeFileSync(config, serverYaml('users: []\n'));
    const io = testIo();
    await run(io, 'users', 'list', '--config', config);
    expect(expectFailure(io, 'QG_ERR_CONFIG_INVALID', EXIT_USAGE)).toContain('users_file');
  });
});

describe('help', () => {
  it('describes the commands, their options and where the file is', async () => {
    const io = testIo();
    const { program, help } = operatorProgram(io);
    await expect(program.parseAsync(['users', 'add', '--help'], { from: 'user' })).rejects.toMatchObject({ code: 'commander.helpDisplayed' });
    expect(help()).toContain('--bandwidth <rate>');
    expect(help()).toContain('--password-stdin');
    expect(help()).toContain('users_file named by the server config');
    expect(help()).toContain('Examples:');
  });
});
