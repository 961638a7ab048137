/**
 * `quicgate users add|passwd|set|remove|list`: editing the users file the gateway reads.
 *
 * Which file: --users-file PATH; else the users_file named by the server config (--config FILE, or
 * $QUICGATE_CONFIG); else ./config/users.yaml. With a server config its default_bandwidth applies to users
 * that set none, and static addresses are checked against its tunnel networks before anything is written.
 *
 * Every change goes through saveUsersFile (comments stay, the result is validated, written atomically) and
 * only takes effect in a running gateway on reload (SIGHUP or POST /api/reload); the output says so.
 */
import { chownSync, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { loadUsersFile, saveUsersFile } from '../config/load.js';
import { hashPassword } from '../config/password.js';
import { checkServerSemantics, UserSchema, userName } from '../config/schema.js';
import type { Bandwidth, ServerConfig, UserConfig } from '../config/types.js';
import { formatRate, formatSize, parseRate, parseSize } from '../config/units.js';
import { isQuicgateError, QuicgateError } from '../errors.js';
import { processIo, runAction, type CliIo } from './io.js';
import { CONFIG_ENV, configPathFrom, readServerFileSettings } from './operator-config.js';
import { readNewPassword } from './prompt.js';
import { renderTable, type Column } from './table.js';

/** Used when neither --users-file nor a server config says where the users are (relative to the working dir). */
export const DEFAULT_USERS_FILE = 'config/users.yaml';

export const RELOAD_REMINDER =
  'a running gateway applies this on reload: `systemctl reload quicgate` (SIGHUP) or `quicgate reload` (POST /api/reload)\n';

// ---- where the users are ----------------------------------------------------------------------------------

export interface UsersTargetOptions {
  readonly usersFile?: string;
  readonly config?: string;
}

export interface UsersTarget {
  /** Absolute path of the users file. */
  readonly file: string;
  /** Bandwidth of users that set none: the server's default_bandwidth, or unlimited without a server config. */
  readonly defaultBandwidth: Bandwidth;
  /** The server config when one was given: static addresses are checked against its networks. */
  readonly server: ServerConfig | null;
}

export async function resolveUsersTarget(options: UsersTargetOptions, env: CliIo['env']): Promise<UsersTarget> {
  const configPath = configPathFrom(options.config, env);
  const server = configPath === null ? null : await readServerFileSettings(configPath);
  const defaultBandwidth = server?.config.defaultBandwidth ?? null;
  if (options.usersFile !== undefined) return { file: resolve(options.usersFile), defaultBandwidth, server: server?.config ?? null };
  if (server === null) return { file: resolve(DEFAULT_USERS_FILE), defaultBandwidth, server: null };
  if (server.config.usersFile === null) {
    const why = server.inlineUsers
      ? 'keeps its users inline under "users:"; these commands edit a users file: move the users to a file named by users_file'
      : 'names no users_file; add `users_file: users.yaml` to it';
    throw new QuicgateError('QG_ERR_CONFIG_INVALID', `${server.config.source} ${why}, or pass --users-file PATH`, {
      details: { file: server.config.source },
    });
  }
  return { file: server.config.usersFile, defaultBandwidth, server: server.config };
}

// ---- option values ----------------------------------------------------------------------------------------

function optionProblem(option: string, err: unknown): never {
  if (isQuicgateError(err)) throw new QuicgateError(err.code, `${option}: ${err.message}`, { cause: err, details: { option } });
  throw err;
}

export function parseUserNameArgument(name: string): string {
  const result = userName.safeParse(name);
  if (result.success) return result.data;
  throw new QuicgateError('QG_ERR_CONFIG_INVALID', `invalid user name ${JSON.stringify(name)}: ${result.error.issues[0]?.message ?? 'not allowed'}`, {
    details: { name },
  });
}

/** "unlimited" or a rate above zero; QG_ERR_UNIT_INVALID otherwise. */
export function parseBandwidthOption(text: string): Bandwidth {
  if (text.trim() === 'unlimited') return null;
  let rate: number;
  try {
    rate = parseRate(text);
  } catch (err) {
    return optionProblem('--bandwidth', err);
  }
  if (rate <= 0) throw new QuicgateError('QG_ERR_UNIT_INVALID', `--bandwidth: expected "unlimited" or a rate above zero, got "${text}"`);
  return rate;
}

/** A size above zero; "default" (when allowed) is null, the gateway's default burst. */
export function parseBurstOption(text: string, allowDefault: boolean): number | null {
  if (allowDefault && text.trim() === 'default') return null;
  let bytes: number;
  try {
    bytes = parseSize(text);
  } catch (err) {
    return optionProblem('--burst', err);
  }
  if (bytes <= 0) throw new QuicgateError('QG_ERR_UNIT_INVALID', `--burst: expected a size above zero, got "${text}"`);
  return bytes;
}

/** A whole number >= 1; "default" (when allowed) is null, the server's max_sessions_per_user. */
export function parseMaxSessionsOption(text: string, allowDefault: boolean): number | null {
  const trimmed = text.trim();
  if (allowDefault && trimmed === 'default') return null;
  const n = /^\d{1,6}$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!(n >= 1)) {
    const expected = allowDefault ? 'a whole number >= 1 or "default"' : 'a whole number >= 1';
    throw new QuicgateError('QG_ERR_CONFIG_INVALID', `--max-sessions: expected ${expected}, got "${text}"`, { details: { option: '--max-sessions' } });
  }
  return n;
}

/** IP addresses in canonical form (same rules as the users file), duplicates dropped. */
export function parseStaticOption(addresses: readonly string[]): string[] {
  const result = UserSchema.shape.static_addresses.safeParse([...addresses]);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new QuicgateError('QG_ERR_CONFIG_INVALID', `--static: ${issue?.message ?? 'invalid address'}`, { details: { option: '--static' } });
  }
  return [...new Set(result.data ?? [])];
}

// ---- reading and writing ----------------------------------------------------------------------------------

function loadUsers(target: UsersTarget): Promise<UserConfig[]> {
  return loadUsersFile(target.file, { defaultBandwidth: target.defaultBandwidth });
}

/** The users, or none when the file does not exist yet (its directory must). */
async function loadUsersOrNone(target: UsersTarget): Promise<UserConfig[]> {
  if (existsSync(target.file)) return loadUsers(target);
  const dir = dirname(target.file);
  if (!existsSync(dir)) {
    throw new QuicgateError('QG_ERR_CONFIG_NOT_FOUND', `cannot create ${target.file}: directory ${dir} does not exist`, { details: { file: target.file } });
  }
  return [];
}

function indexOfUser(users: readonly UserConfig[], name: string, file: string): number {
  const index = users.findIndex((u) => u.name === name);
  if (index >= 0) return index;
  const other = users.find((u) => u.name.toLowerCase() === name.toLowerCase());
  const hint = other === undefined ? '' : ` (did you mean ${other.name}?)`;
  throw new QuicgateError('QG_ERR_USER_NOT_FOUND', `no user named ${name} in ${file}${hint}`, { details: { name, file } });
}

/**
 * With a server config: refuses static addresses of the edited user that the gateway would refuse (outside the
 * networks, reserved, another user's). Problems the file already had are left to the gateway's own report.
 */
function checkStaticAddresses(target: UsersTarget, before: readonly UserConfig[], after: readonly UserConfig[]): void {
  const server = target.server;
  if (server === null) return;
  const problems = (users: readonly UserConfig[]): string[] =>
    checkServerSemantics({ ...server, users }, users.map((_, index) => ({ file: target.file, index })))
      .filter((p) => p.path[0] === 'users' && p.path[2] === 'static_addresses')
      .map((p) => p.message);
  const known = new Set(problems(before));
  const fresh = problems(after).filter((message) => !known.has(message));
  if (fresh.length > 0) {
    throw new QuicgateError('QG_ERR_ADDRESS_UNAVAILABLE', fresh.join('; '), { details: { file: target.file, networks: server.networks } });
  }
}

/** Writes the users; keeps the file's owner and group (saving replaces the file, e.g. as root). */
async function saveUsers(target: UsersTarget, users: readonly UserConfig[], io: CliIo): Promise<void> {
  const owner = ownerOf(target.file);
  await saveUsersFile(target.file, users, { defaultBandwidth: target.defaultBandwidth });
  const now = ownerOf(target.file);
  if (owner === null || now === null || (owner.uid === now.uid && owner.gid === now.gid)) return;
  try {
    chownSync(target.file, owner.uid, owner.gid);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    io.stderr.write(`quicgate: warning: could not give ${target.file} back its owner ${owner.uid}:${owner.gid} (${reason}); check that the gateway can still read it\n`);
  }
}

function ownerOf(file: string): { uid: number; gid: number } | null {
  try {
    const stat = statSync(file);
    return { uid: stat.uid, gid: stat.gid };
  } catch {
    return null;
  }
}

// ---- describing users -------------------------------------------------------------------------------------

function burstText(burst: number | null): string {
  return burst === null ? 'default' : formatSize(burst);
}

function maxSessionsText(maxSessions: number | null, server: ServerConfig | null): string {
  if (maxSessions !== null) return String(maxSessions);
  return server === null ? 'default' : `default (${server.limits.maxSessionsPerUser})`;
}

function quotaText(user: UserConfig): string {
  const q = user.quota;
  if (q === null) return '-';
  const after = q.action === 'throttle' ? `then ${formatRate(q.throttleRate)}` : 'then disconnect';
  return `${formatSize(q.bytes)}/${q.period}, ${after}`;
}

/** A user as --json shows it: everything but the password hash. */
export interface UserListEntry {
  readonly name: string;
  /** Bytes per second; null = unlimited. */
  readonly bandwidth: number | null;
  readonly burst: number | null;
  readonly maxSessions: number | null;
  readonly staticAddresses: readonly string[];
  readonly disabled: boolean;
  readonly quota: UserConfig['quota'];
}

function listEntry(user: UserConfig): UserListEntry {
  return {
    name: user.name,
    bandwidth: user.bandwidth,
    burst: user.burst,
    maxSessions: user.maxSessions,
    staticAddresses: user.staticAddresses,
    disabled: user.disabled,
    quota: user.quota,
  };
}

/** What changed, e.g. ["bandwidth 10 Mbit/s -> 20 Mbit/s", "disabled"]. */
function describeChanges(before: UserConfig, after: UserConfig, server: ServerConfig | null): string[] {
  const changes: string[] = [];
  const change = (label: string, from: string, to: string): void => {
    if (from !== to) changes.push(`${label} ${from} -> ${to}`);
  };
  change('bandwidth', formatRate(before.bandwidth), formatRate(after.bandwidth));
  change('burst', burstText(before.burst), burstText(after.burst));
  change('max sessions', maxSessionsText(before.maxSessions, server), maxSessionsText(after.maxSessions, server));
  change('static addresses', before.staticAddresses.join(',') || 'none', after.staticAddresses.join(',') || 'none');
  if (before.disabled !== after.disabled) changes.push(after.disabled ? 'disabled' : 'enabled');
  return changes;
}

// ---- the commands -----------------------------------------------------------------------------------------

export interface PasswordInputOptions {
  readonly passwordStdin?: boolean;
}

export interface UsersAddOptions extends UsersTargetOptions, PasswordInputOptions {
  readonly bandwidth?: string;
  readonly burst?: string;
  readonly maxSessions?: string;
  readonly static?: readonly string[];
  readonly disabled?: boolean;
}

export async function usersAdd(name: string, options: UsersAddOptions, io: CliIo): Promise<void> {
  const validName = parseUserNameArgument(name);
  const target = await resolveUsersTarget(options, io.env);
  const draft: UserConfig = {
    name: validName,
    passwordHash: '',
    // Written explicitly even when it is the default: a later default_bandwidth change should not move it.
    bandwidth: options.bandwidth === undefined ? target.defaultBandwidth : parseBandwidthOption(options.bandwidth),
    burst: options.burst === undefined ? null : parseBurstOption(options.burst, false),
    maxSessions: options.maxSessions === undefined ? null : parseMaxSessionsOption(options.maxSessions, false),
    staticAddresses: options.static === undefined ? [] : parseStaticOption(options.static),
    disabled: options.disabled === true,
    quota: null,
  };
  const users = await loadUsersOrNone(target);
  const clash = users.find((u) => u.name.toLowerCase() === validName.toLowerCase());
  if (clash !== undefined) {
    throw new QuicgateError(
      'QG_ERR_CONFIG_INVALID',
      `user ${clash.name} already exists in ${target.file} (names are unique, ignoring case); use \`quicgate users set\` or \`quicgate users passwd\``,
      { details: { name: clash.name, file: target.file } },
    );
  }
  checkStaticAddresses(target, users, [...users, draft]);
  // Everything is checked before the password is asked for: nobody types it twice for nothing.
  const user: UserConfig = { ...draft, passwordHash: await hashPassword(await readNewPassword(io, options)) };
  await saveUsers(target, [...users, user], io);
  const state = user.disabled ? ', disabled' : '';
  io.stdout.write(`added user ${user.name} (bandwidth ${formatRate(user.bandwidth)}${state}) to ${target.file}\n${RELOAD_REMINDER}`);
}

export interface UsersPasswdOptions extends UsersTargetOptions, PasswordInputOptions {}

export async function usersPasswd(name: string, options: UsersPasswdOptions, io: CliIo): Promise<void> {
  const target = await resolveUsersTarget(options, io.env);
  const users = await loadUsers(target);
  const index = indexOfUser(users, name, target.file);
  const passwordHash = await hashPassword(await readNewPassword(io, options));
  // Re-read: the file may have changed while the password was typed.
  const current = await loadUsers(target);
  const currentIndex = indexOfUser(current, name, target.file);
  const updated = current.map((u, i) => (i === currentIndex ? { ...u, passwordHash } : u));
  await saveUsers(target, updated, io);
  io.stdout.write(`changed the password of ${users[index]?.name ?? name} in ${target.file}; live sessions stay connected\n${RELOAD_REMINDER}`);
}

export interface UsersSetOptions extends UsersTargetOptions {
  readonly bandwidth?: string;
  readonly burst?: string;
  readonly maxSessions?: string;
  /** Addresses to reserve (replacing the list); false (--no-static) removes them all. */
  readonly static?: readonly string[] | false;
  readonly enable?: boolean;
  readonly disable?: boolean;
}

export async function usersSet(name: string, options: UsersSetOptions, io: CliIo): Promise<void> {
  if (options.enable === true && options.disable === true) {
    throw new QuicgateError('QG_ERR_CONFIG_INVALID', '--enable and --disable contradict each other; give one');
  }
  const target = await resolveUsersTarget(options, io.env);
  const changes: Partial<Omit<UserConfig, 'name' | 'passwordHash' | 'quota'>> = {
    ...(options.bandwidth === undefined ? {} : { bandwidth: parseBandwidthOption(options.bandwidth) }),
    ...(options.burst === undefined ? {} : { burst: parseBurstOption(options.burst, true) }),
    ...(options.maxSessions === undefined ? {} : { maxSessions: parseMaxSessionsOption(options.maxSessions, true) }),
    ...(options.static === undefined ? {} : { staticAddresses: options.static === false ? [] : parseStaticOption(options.static) }),
    ...(options.enable === true ? { disabled: false } : options.disable === true ? { disabled: true } : {}),
  };
  if (Object.keys(changes).length === 0) {
    throw new QuicgateError(
      'QG_ERR_CONFIG_INVALID',
      'nothing to change: give at least one of --bandwidth, --burst, --max-sessions, --static, --no-static, --enable, --disable',
    );
  }
  const users = await loadUsers(target);
  const index = indexOfUser(users, name, target.file);
  const before = users[index]!;
  const after: UserConfig = { ...before, ...changes };
  const updated = users.map((u, i) => (i === index ? after : u));
  checkStaticAddresses(target, users, updated);
  const described = describeChanges(before, after, target.server);
  if (described.length === 0) {
    io.stdout.write(`user ${before.name} already has these settings; ${target.file} is unchanged\n`);
    return;
  }
  await saveUsers(target, updated, io);
  const ending = after.disabled && !before.disabled ? '; the gateway ends their live sessions on reload' : '';
  io.stdout.write(`updated user ${before.name} in ${target.file}: ${described.join(', ')}${ending}\n${RELOAD_REMINDER}`);
}

export type UsersRemoveOptions = UsersTargetOptions;

export async function usersRemove(name: string, options: UsersRemoveOptions, io: CliIo): Promise<void> {
  const target = await resolveUsersTarget(options, io.env);
  const users = await loadUsers(target);
  const index = indexOfUser(users, name, target.file);
  await saveUsers(target, users.filter((_, i) => i !== index), io);
  io.stdout.write(`removed user ${users[index]?.name ?? name} from ${target.file}; the gateway ends their sessions on reload\n${RELOAD_REMINDER}`);
}

export interface UsersListOptions extends UsersTargetOptions {
  readonly json?: boolean;
}

export async function usersList(options: UsersListOptions, io: CliIo): Promise<void> {
  const target = await resolveUsersTarget(options, io.env);
  const users = await loadUsers(target);
  if (options.json === true) {
    io.stdout.write(`${JSON.stringify({ file: target.file, users: users.map(listEntry) }, null, 2)}\n`);
    return;
  }
  if (users.length === 0) {
    io.stdout.write(`no users in ${target.file}\n`);
    return;
  }
  const columns: Column<UserConfig>[] = [
    { header: 'NAME', cell: (u) => u.name },
    { header: 'BANDWIDTH', cell: (u) => formatRate(u.bandwidth), align: 'right' },
    { header: 'BURST', cell: (u) => burstText(u.burst), align: 'right' },
    { header: 'MAX SESSIONS', cell: (u) => maxSessionsText(u.maxSessions, target.server), align: 'right' },
    { header: 'STATIC', cell: (u) => u.staticAddresses.join(',') || '-' },
    { header: 'DISABLED', cell: (u) => (u.disabled ? 'yes' : 'no') },
    { header: 'QUOTA', cell: quotaText },
  ];
  io.stdout.write(renderTable(users, columns));
}

// ---- command line -----------------------------------------------------------------------------------------

const WHICH_FILE = `
The users file: --users-file PATH; else the users_file named by the server config (--config FILE or
$${CONFIG_ENV}); else ./${DEFAULT_USERS_FILE}. With a server config, its default_bandwidth is used for
users without their own, and static addresses are checked against its tunnel networks.
Changes reach a running gateway on reload: systemctl reload quicgate (SIGHUP) or quicgate reload.`;

const RATE_HELP = '"unlimited" or a rate: 20Mbit/s, 10Mbps, 1.5MB/s, 512KiB/s (b = bits, B = bytes)';

function withFileOptions(command: Command): Command {
  return command
    .option('--users-file <path>', 'the users file to edit (see below for the default)')
    .option('-c, --config <file>', `server config whose users_file to edit (default: $${CONFIG_ENV})`)
    .addHelpText('after', WHICH_FILE);
}

function withPasswordOptions(command: Command): Command {
  return command.option('--password-stdin', 'read the password as one line from stdin, never prompt (the default when stdin is not a terminal)');
}

export function registerUsersCommands(program: Command, io: CliIo = processIo()): void {
  const users = program
    .command('users')
    .description('manage the VPN users in the users file (add, passwd, set, remove, list)')
    .addHelpText('after', WHICH_FILE);

  withPasswordOptions(
    withFileOptions(
      users
        .command('add')
        .description('add a user; asks for the password twice (not echoed), or reads one line from stdin')
        .argument('<name>', 'user name: 1-64 letters, digits, ".", "_", "@" or "-"')
        .option('--bandwidth <rate>', `bandwidth shared by all the user's sessions: ${RATE_HELP} (default: the server's default_bandwidth)`)
        .option('--burst <size>', 'token bucket depth, e.g. 256KiB (default: the gateway default)')
        .option('--max-sessions <n>', 'own session limit (default: limits.max_sessions_per_user)')
        .option('--static <address...>', 'tunnel addresses reserved for this user (IPv4 and/or IPv6); put after NAME')
        .option('--disabled', 'add the user disabled (cannot log in until `users set NAME --enable`)'),
    ),
  )
    .addHelpText('after', '\nExamples:\n  quicgate users add alice --bandwidth 20Mbit/s\n  printf \'%s\\n\' "$PW" | quicgate users add bob --bandwidth unlimited --static 198.18.0.10')
    .action((name: string, options: UsersAddOptions) => runAction(io, () => usersAdd(name, options, io)));

  withPasswordOptions(
    withFileOptions(
      users
        .command('passwd')
        .description("set a user's password (asked twice, not echoed; or one line from stdin)")
        .argument('<name>', 'user name'),
    ),
  ).action((name: string, options: UsersPasswdOptions) => runAction(io, () => usersPasswd(name, options, io)));

  withFileOptions(
    users
      .command('set')
      .description("change a user's limits, reserved addresses or enabled state; other settings stay")
      .argument('<name>', 'user name')
      .option('--bandwidth <rate>', RATE_HELP)
      .option('--burst <size>', 'token bucket depth, e.g. 256KiB, or "default"')
      .option('--max-sessions <n>', 'own session limit, or "default" for limits.max_sessions_per_user')
      .option('--static <address...>', 'reserve these tunnel addresses (replaces the list); put after NAME')
      .option('--no-static', 'remove all reserved addresses')
      .addOption(new Option('--enable', 'allow the user to log in again').conflicts('disable'))
      .addOption(new Option('--disable', 'refuse logins; the gateway ends their live sessions on reload').conflicts('enable')),
  )
    .addHelpText('after', '\nExamples:\n  quicgate users set alice --bandwidth 50Mbit/s --burst default\n  quicgate users set mallory --disable')
    .action((name: string, options: UsersSetOptions) => runAction(io, () => usersSet(name, options, io)));

  withFileOptions(users.command('remove').description('remove a user from the users file').argument('<name>', 'user name')).action(
    (name: string, options: UsersRemoveOptions) => runAction(io, () => usersRemove(name, options, io)),
  );

  withFileOptions(
    users
      .command('list')
      .description('list the users: bandwidth, burst, session limit, reserved addresses, disabled, quota (never the hashes)')
      .option('--json', 'print JSON (rates in bytes per second, sizes in bytes) for scripts'),
  ).action((options: UsersListOptions) => runAction(io, () => usersList(options, io)));
}
