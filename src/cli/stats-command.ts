/**
 * `quicgate stats` (totals over a window, from the gateway's history and live sessions) and `quicgate reload`
 * (re-read config and users now, like SIGHUP), both through the admin API.
 */
import type { Command } from 'commander';
import type { StatsView } from '../admin/backend.js';
import { QuicgateError } from '../errors.js';
import { adminClientFor, withAdminOptions, type AdminConnectionOptions, type ReloadAnswer } from './admin-client.js';
import { processIo, runAction, type CliIo } from './io.js';
import { renderPairs, renderTable, sizeCell } from './table.js';

/** Same bounds as the admin API (src/admin/validation.ts): up to a year. */
export const MAX_WINDOW_HOURS = 8760;

export interface StatsOptions extends AdminConnectionOptions {
  /** Hours back from now; the gateway's default (24) when not given. */
  readonly windowHours?: string;
  /** Only this gateway's rows and sessions (config fleet; with SQLite history only the answering gateway has rows). */
  readonly gateway?: string;
  readonly json?: boolean;
}

export function parseWindowHours(text: string): number {
  const n = /^\d{1,5}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(n >= 1 && n <= MAX_WINDOW_HOURS)) {
    throw new QuicgateError('QG_ERR_CONFIG_INVALID', `--window-hours: expected a whole number from 1 to ${MAX_WINDOW_HOURS}, got "${text}"`, {
      details: { option: '--window-hours' },
    });
  }
  return n;
}

export async function stats(options: StatsOptions, io: CliIo): Promise<void> {
  const windowHours = options.windowHours === undefined ? undefined : parseWindowHours(options.windowHours);
  const client = await adminClientFor(options, io.env);
  const view = await client.stats(windowHours, options.gateway);
  io.stdout.write(options.json === true ? `${JSON.stringify(view, null, 2)}\n` : renderStats(view));
}

const HISTORY_SCOPE: Record<StatsView['scope']['history'], string> = {
  fleet: 'the fleet (shared PostgreSQL)',
  gateway: "this gateway's own (SQLite)",
  memory: 'unavailable: figures since this gateway started',
};
const LIVE_SCOPE: Record<StatsView['scope']['live'], string> = { fleet: "every gateway's", gateway: "this gateway's only" };

export function renderStats(view: StatsView): string {
  const rejections = Object.entries(view.rejections)
    .filter(([, n]) => n !== undefined && n > 0)
    .map(([reason, n]) => `${reason} ${n}`);
  let out = renderPairs([
    ['window', `last ${view.windowHours} h`],
    ['answered by', view.scope.gateway],
    ['history', HISTORY_SCOPE[view.scope.history]],
    ['active sessions', `${view.activeSessions} (${view.activeUsers} user${view.activeUsers === 1 ? '' : 's'})`],
    ['live sessions', LIVE_SCOPE[view.scope.live]],
    ['sessions in window', String(view.sessionsInWindow)],
    ['traffic in window', `in ${sizeCell(view.bytesInWindow.in)}, out ${sizeCell(view.bytesInWindow.out)}`],
    ['rejections', rejections.length === 0 ? 'none' : rejections.join(', ')],
  ]);
  if (view.topUsers.length > 0) {
    out += `\ntop users:\n${renderTable(view.topUsers, [
      { header: 'USER', cell: (u) => u.user },
      { header: 'TRAFFIC', cell: (u) => sizeCell(u.bytes), align: 'right' },
    ])}`;
  }
  return out;
}

export interface ReloadOptions extends AdminConnectionOptions {
  readonly json?: boolean;
}

export async function reload(options: ReloadOptions, io: CliIo): Promise<void> {
  const client = await adminClientFor(options, io.env);
  const result = await client.reload();
  io.stdout.write(options.json === true ? `${JSON.stringify(result, null, 2)}\n` : describeReload(result));
}

export function describeReload(result: ReloadAnswer): string {
  const parts = ['configuration reloaded'];
  if (result.bandwidthChanged.length > 0) parts.push(`bandwidth changed for ${result.bandwidthChanged.join(', ')}`);
  if (result.usersRemoved.length > 0) parts.push(`users removed or disabled: ${result.usersRemoved.join(', ')}`);
  if (result.sessionsClosed > 0) parts.push(`${result.sessionsClosed} session${result.sessionsClosed === 1 ? '' : 's'} closed`);
  const applied = result.changed.filter((c) => c.effect === 'live').map((c) => c.key);
  const later = result.changed.filter((c) => c.effect === 'new_sessions').map((c) => c.key);
  if (applied.length > 0) parts.push(`applied now: ${applied.join(', ')}`);
  if (later.length > 0) parts.push(`applied to new sessions: ${later.join(', ')}`);
  const restart = result.needRestart ?? [];
  if (restart.length > 0) parts.push(`changed but only applied after a restart: ${restart.join(', ')}`);
  if (result.changed.length === 0) parts.push('no setting changed');
  return `${parts.join('; ')}\n`;
}

export function registerStatsCommand(program: Command, io: CliIo = processIo()): void {
  withAdminOptions(
    program
      .command('stats')
      .description('totals of a running gateway over a window: active sessions, sessions and traffic, top users, rejections')
      .option('--window-hours <n>', `hours back from now, 1 to ${MAX_WINDOW_HOURS} (default: 24)`)
      .option('--gateway <id>', "config fleet: only this gateway's sessions and rows")
      .option('--json', 'print the admin API answer as JSON (bytes) for scripts'),
  )
    .addHelpText('after', '\nExamples:\n  quicgate stats\n  quicgate stats --window-hours 168 --json')
    .action((options: StatsOptions) => runAction(io, () => stats(options, io)));

  withAdminOptions(
    program
      .command('reload')
      .description('make a running gateway re-read its config and users file now (same as SIGHUP); refused if invalid')
      .option('--json', 'print the admin API answer as JSON'),
  ).action((options: ReloadOptions) => runAction(io, () => reload(options, io)));
}
