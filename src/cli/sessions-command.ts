/**
 * `quicgate sessions list|kill`: the live sessions of a running gateway, through its admin API.
 */
import type { Command } from 'commander';
import type { SessionView } from '../admin/backend.js';
import { QuicgateError } from '../errors.js';
import { adminClientFor, withAdminOptions, type AdminConnectionOptions, type SessionList } from './admin-client.js';
import { processIo, runAction, type CliIo } from './io.js';
import { ageCell, rateCell, renderTable, sizeCell, type Column } from './table.js';

export interface SessionsListOptions extends AdminConnectionOptions {
  /** Only this user's sessions (an unknown user is QG_ERR_USER_NOT_FOUND). */
  readonly user?: string;
  /** Config fleet: only the sessions of this gateway. */
  readonly gateway?: string;
  readonly json?: boolean;
}

export async function sessionsList(options: SessionsListOptions, io: CliIo, nowMs: number = Date.now()): Promise<void> {
  const client = await adminClientFor(options, io.env);
  let list: SessionList;
  if (options.user === undefined) list = await client.sessionList(options.gateway);
  else {
    // The user's own answer (QG_ERR_USER_NOT_FOUND for an unknown user) lists this gateway's sessions; with a
    // fleet the fleet-wide list has them all.
    const user = await client.getUser(options.user);
    const fleetList = await client.sessionList(options.gateway);
    list = fleetList.fleet === undefined ? { sessions: user.sessions } : { ...fleetList, sessions: fleetList.sessions.filter((s) => s.user === options.user) };
  }
  const { sessions } = list;
  if (options.json === true) {
    io.stdout.write(`${JSON.stringify(list.fleet === undefined ? { sessions } : { sessions, fleet: list.fleet }, null, 2)}\n`);
    return;
  }
  if (list.fleet !== undefined && !list.fleet.complete) {
    io.stderr.write(`warning: only gateway ${list.fleet.gateway}'s sessions are listed: the fleet's Redis cannot be reached (${list.fleet.error ?? 'no detail'})\n`);
  }
  if (sessions.length === 0) {
    io.stdout.write(options.user === undefined ? 'no live sessions\n' : `no live sessions of ${options.user}\n`);
    return;
  }
  const sorted = [...sessions].sort((a, b) => a.user.localeCompare(b.user) || a.startedAt.localeCompare(b.startedAt));
  const columns: Column<SessionView>[] = [
    { header: 'ID', cell: (s) => s.id },
    ...(list.fleet === undefined ? [] : [{ header: 'GATEWAY', cell: (s: SessionView) => s.gateway ?? '-' }]),
    { header: 'USER', cell: (s) => s.user },
    { header: 'ADDRESSES', cell: (s) => [s.ipv4, s.ipv6].filter((a) => a !== null).join(',') || '-' },
    { header: 'PEER', cell: (s) => s.peer },
    { header: 'VIA', cell: (s) => s.transport },
    { header: 'UP', cell: (s) => ageCell(s.startedAt, nowMs), align: 'right' },
    { header: 'IDLE', cell: (s) => ageCell(s.lastActivityAt, nowMs), align: 'right' },
    { header: 'IN', cell: (s) => sizeCell(s.bytesIn), align: 'right' },
    { header: 'OUT', cell: (s) => sizeCell(s.bytesOut), align: 'right' },
    { header: 'RATE IN', cell: (s) => rateCell(s.rateIn), align: 'right' },
    { header: 'RATE OUT', cell: (s) => rateCell(s.rateOut), align: 'right' },
  ];
  io.stdout.write(renderTable(sorted, columns));
}

export interface SessionsKillOptions extends AdminConnectionOptions {
  /** Kill all sessions of this user instead of one session. */
  readonly user?: string;
  readonly json?: boolean;
}

export async function sessionsKill(id: string | undefined, options: SessionsKillOptions, io: CliIo): Promise<void> {
  if ((id === undefined) === (options.user === undefined)) {
    throw new QuicgateError('QG_ERR_CONFIG_INVALID', 'give either a session ID or --user NAME (see `quicgate sessions list`)');
  }
  const client = await adminClientFor(options, io.env);
  if (options.user !== undefined) {
    const result = await client.killUserSessions(options.user);
    if (options.json === true) io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      const n = result.sessionsClosed;
      io.stdout.write(
        `closed ${n} session${n === 1 ? '' : 's'} of ${result.user}; they may log in again (\`quicgate users set ${result.user} --disable\` and reload to keep them out)\n`,
      );
    }
    return;
  }
  const result = await client.killSession(id ?? '');
  const where = result.gateway === undefined ? '' : ` on gateway ${result.gateway}`;
  io.stdout.write(options.json === true ? `${JSON.stringify(result, null, 2)}\n` : `closed session ${result.id}${where}\n`);
}

export function registerSessionsCommands(program: Command, io: CliIo = processIo()): void {
  const sessions = program
    .command('sessions')
    .description('list or end the live sessions of a running gateway, with config fleet of every gateway (through its admin API)');

  withAdminOptions(
    sessions
      .command('list')
      .description('list live sessions: user, tunnel addresses, peer, transport, age, traffic and current rates')
      .option('--user <name>', "only this user's sessions")
      .option('--gateway <id>', "config fleet: only the sessions of this gateway (default: every gateway's)")
      .option('--json', 'print the admin API answer as JSON (bytes, bytes per second, ISO times) for scripts'),
  )
    .addHelpText('after', '\nExamples:\n  quicgate sessions list\n  quicgate sessions list --user alice --json | jq -r ".sessions[].id"')
    .action((options: SessionsListOptions) => runAction(io, () => sessionsList(options, io)));

  withAdminOptions(
    sessions
      .command('kill')
      .description("end one session by ID, or all of a user's sessions with --user (the user may reconnect)")
      .argument('[id]', 'session ID, from `quicgate sessions list`')
      .option('--user <name>', "end all of this user's sessions instead")
      .option('--json', 'print the admin API answer as JSON'),
  )
    .addHelpText('after', '\nExamples:\n  quicgate sessions kill b3f1c2d4-6a7e-4f00-9c1e-2d5a8e7f9012\n  quicgate sessions kill --user mallory')
    .action((id: string | undefined, options: SessionsKillOptions) => runAction(io, () => sessionsKill(id, options, io)));
}
