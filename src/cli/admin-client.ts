/**
 * A small typed client of the gateway's admin API (docs/admin-api.md), for the operator commands.
 *
 * Where: --admin URL, else the server config's admin.listen/admin.port (a wildcard listen address is reached
 * on loopback), else http://127.0.0.1:9090. Token: --token, else $QUICGATE_ADMIN_TOKEN, else the server
 * config's admin.token. The server config is --config FILE or $QUICGATE_CONFIG.
 *
 * Answers are validated with zod; `{error:{code,message}}` answers become a QuicgateError with the server's
 * code, and an unreachable gateway becomes one clear line (QG_ERR_CONNECT_FAILED).
 */
import type { Command } from 'commander';
import { z } from 'zod';
import type { FleetListInfo, QuotaView, ReloadResult, SessionView, StatsView, UserView } from '../admin/backend.js';
import { statsScopeSchema, userScopeSchema } from '../admin/schemas.js';
import { SERVER_DEFAULTS } from '../config/defaults.js';
import { ErrorCodes, QuicgateError, type ErrorCode } from '../errors.js';
import type { CliIo } from './io.js';
import { CONFIG_ENV, configPathFrom, readServerFileSettings } from './operator-config.js';

export const ADMIN_TOKEN_ENV = 'QUICGATE_ADMIN_TOKEN';
export const DEFAULT_ADMIN_TIMEOUT_MS = 10_000;

// ---- where and who ----------------------------------------------------------------------------------------

export interface AdminConnectionOptions {
  /** Base URL of the admin API, e.g. http://127.0.0.1:9090 */
  readonly admin?: string;
  readonly token?: string;
  /** Server config to take admin.listen, admin.port and admin.token from. */
  readonly config?: string;
}

export interface AdminTarget {
  /** Base URL, ending in "/". */
  readonly baseUrl: string;
  readonly token: string;
}

/** Adds --admin, --token and --config to an operator command. */
export function withAdminOptions(command: Command): Command {
  return command
    .option('--admin <url>', 'admin API base URL (default: admin.listen/admin.port of the server config, else http://127.0.0.1:9090)')
    .option('--token <token>', `admin bearer token (default: $${ADMIN_TOKEN_ENV}, else admin.token of the server config)`)
    .option('-c, --config <file>', `server config for the admin address and token (default: $${CONFIG_ENV})`)
    .addHelpText('after', ADMIN_CONNECTION_HELP);
}

const ADMIN_CONNECTION_HELP = `
The admin API: --admin URL, else admin.listen/admin.port of the server config (--config or $${CONFIG_ENV}),
else http://127.0.0.1:9090. The token: --token, else $${ADMIN_TOKEN_ENV}, else admin.token of the config
(prefer the variable or the config: a --token value is visible to other local users in the process list).`;

export async function resolveAdminTarget(options: AdminConnectionOptions, env: CliIo['env']): Promise<AdminTarget> {
  const configPath = configPathFrom(options.config, env);
  const envToken = env[ADMIN_TOKEN_ENV];
  const needConfig = configPath !== null && (options.admin === undefined || (options.token === undefined && !envToken));
  const admin = needConfig ? (await readServerFileSettings(configPath)).config.admin : null;

  const token = options.token ?? (envToken !== undefined && envToken !== '' ? envToken : null) ?? admin?.token ?? null;
  if (token === null || token === '') {
    throw new QuicgateError(
      'QG_ERR_ADMIN_UNAUTHORIZED',
      `no admin token: pass --token, set ${ADMIN_TOKEN_ENV}, or give --config with admin.token (the gateway serves the admin API only with a token)`,
    );
  }
  if (options.admin !== undefined) return { baseUrl: parseAdminUrl(options.admin), token };
  const listen = admin?.listen ?? SERVER_DEFAULTS.adminListen;
  const port = admin?.port ?? SERVER_DEFAULTS.adminPort;
  return { baseUrl: `http://${hostForUrl(listen)}:${port}/`, token };
}

function parseAdminUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw badAdminUrl(text);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw badAdminUrl(text);
  }
  return url.href.endsWith('/') ? url.href : `${url.href}/`;
}

function badAdminUrl(text: string): QuicgateError {
  return new QuicgateError('QG_ERR_CONFIG_INVALID', `--admin: expected a URL such as http://127.0.0.1:9090, got ${JSON.stringify(text)}`, {
    details: { option: '--admin' },
  });
}

/** A wildcard listen address is reached on loopback; IPv6 literals need brackets. */
function hostForUrl(listen: string): string {
  if (listen === '0.0.0.0') return '127.0.0.1';
  if (listen === '::') return '[::1]';
  return listen.includes(':') ? `[${listen}]` : listen;
}

// ---- answers ----------------------------------------------------------------------------------------------

const counts = z.record(z.string(), z.number());

export const SessionViewSchema: z.ZodType<SessionView> = z.object({
  id: z.string(),
  user: z.string(),
  ipv4: z.string().nullable(),
  ipv6: z.string().nullable(),
  peer: z.string(),
  transport: z.enum(['h2', 'h3', 'quic', 'memory']),
  startedAt: z.string(),
  lastActivityAt: z.string(),
  bytesIn: z.number(),
  bytesOut: z.number(),
  packetsIn: z.number(),
  packetsOut: z.number(),
  rateIn: z.number(),
  rateOut: z.number(),
  gateway: z.string().optional(),
});

const QuotaViewSchema: z.ZodType<QuotaView> = z.object({
  bytes: z.number(),
  period: z.enum(['day', 'month']),
  periodKey: z.string(),
  used: z.number(),
  remaining: z.number(),
  action: z.enum(['disconnect', 'throttle']),
  exceeded: z.boolean(),
});

export const UserViewSchema: z.ZodType<UserView> = z.object({
  name: z.string(),
  disabled: z.boolean(),
  bandwidth: z.number().nullable(),
  burst: z.number().nullable(),
  rateIn: z.number(),
  rateOut: z.number(),
  maxSessions: z.number(),
  sessions: z.array(SessionViewSchema),
  usage: z.object({ sessions: z.number(), bytesIn: z.number(), bytesOut: z.number() }),
  quota: QuotaViewSchema.nullable(),
  scope: userScopeSchema,
});

export const StatsViewSchema: z.ZodType<StatsView> = z.object({
  windowHours: z.number(),
  activeSessions: z.number(),
  activeUsers: z.number(),
  sessionsInWindow: z.number(),
  bytesInWindow: z.object({ in: z.number(), out: z.number() }),
  topUsers: z.array(z.object({ user: z.string(), bytes: z.number() })),
  rejections: counts,
  scope: statsScopeSchema,
});

/** The reload answer: every changed setting with its effect, and `needRestart`: those that change only with a restart. */
export type ReloadAnswer = ReloadResult;

export const ReloadAnswerSchema: z.ZodType<ReloadAnswer> = z.object({
  bandwidthChanged: z.array(z.string()),
  usersRemoved: z.array(z.string()),
  sessionsClosed: z.number(),
  needRestart: z.array(z.string()),
  changed: z.array(z.object({ key: z.string(), effect: z.enum(['live', 'new_sessions', 'restart']) })),
});

const FleetListInfoSchema: z.ZodType<FleetListInfo> = z.object({
  gateway: z.string(),
  gateways: z.array(z.string()),
  complete: z.boolean(),
  error: z.string().optional(),
});

const SessionListSchema = z.object({ sessions: z.array(SessionViewSchema), fleet: FleetListInfoSchema.optional() });
export type SessionList = z.output<typeof SessionListSchema>;

export const KillSessionResultSchema = z.object({ id: z.string(), closed: z.boolean(), reason: z.string(), gateway: z.string().optional() });
export type KillSessionResult = z.output<typeof KillSessionResultSchema>;

export const KillUserSessionsResultSchema = z.object({ user: z.string(), sessionsClosed: z.number(), reason: z.string() });
export type KillUserSessionsResult = z.output<typeof KillUserSessionsResultSchema>;

const ErrorBodySchema = z.object({ error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }) });

// ---- the client -------------------------------------------------------------------------------------------

export interface AdminClientOptions {
  readonly timeoutMs?: number;
}

export class AdminClient {
  private readonly target: AdminTarget;
  private readonly timeoutMs: number;

  constructor(target: AdminTarget, options: AdminClientOptions = {}) {
    this.target = target;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_ADMIN_TIMEOUT_MS;
  }

  get baseUrl(): string {
    return this.target.baseUrl;
  }

  async listSessions(): Promise<SessionView[]> {
    return (await this.sessionList()).sessions;
  }

  /** The whole answer: with config fleet every gateway's sessions (or one gateway's) and the fleet part. */
  sessionList(gateway?: string): Promise<SessionList> {
    const query = gateway === undefined ? '' : `?gateway=${encodeURIComponent(gateway)}`;
    return this.call('GET', `api/sessions${query}`, SessionListSchema);
  }

  getUser(name: string): Promise<UserView> {
    return this.call('GET', `api/users/${encodeURIComponent(name)}`, UserViewSchema);
  }

  killSession(id: string): Promise<KillSessionResult> {
    return this.call('DELETE', `api/sessions/${encodeURIComponent(id)}`, KillSessionResultSchema);
  }

  killUserSessions(name: string): Promise<KillUserSessionsResult> {
    return this.call('DELETE', `api/users/${encodeURIComponent(name)}/sessions`, KillUserSessionsResultSchema);
  }

  /** `gateway`: only that gateway's history rows and live sessions (the history and fleet permitting). */
  stats(windowHours?: number, gateway?: string): Promise<StatsView> {
    const params = new URLSearchParams();
    if (windowHours !== undefined) params.set('window_hours', String(windowHours));
    if (gateway !== undefined) params.set('gateway', gateway);
    const query = params.size === 0 ? '' : `?${params.toString()}`;
    return this.call('GET', `api/stats${query}`, StatsViewSchema);
  }

  reload(): Promise<ReloadAnswer> {
    return this.call('POST', 'api/reload', ReloadAnswerSchema);
  }

  private async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, schema: z.ZodType<T>): Promise<T> {
    const url = new URL(path, this.target.baseUrl).href;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: { Authorization: `Bearer ${this.target.token}`, Accept: 'application/json' },
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      throw this.unreachable(err);
    }
    let body: unknown;
    let text = '';
    try {
      text = await response.text();
      body = text === '' ? undefined : (JSON.parse(text) as unknown);
    } catch (err) {
      if (!response.ok) throw this.httpError(response, undefined);
      throw new QuicgateError('QG_ERR_ADMIN_INTERNAL', `the admin API at ${this.baseUrl} answered ${method} /${path} with something that is not JSON`, {
        cause: err,
        details: { status: response.status },
      });
    }
    if (!response.ok) throw this.httpError(response, body);
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue === undefined || issue.path.length === 0 ? '' : ` at ${issue.path.map(String).join('.')}`;
      throw new QuicgateError(
        'QG_ERR_ADMIN_INTERNAL',
        `unexpected answer from the admin API at ${this.baseUrl} to ${method} /${path}${where}: ${issue?.message ?? 'invalid'} (gateway and CLI versions differ?)`,
        { details: { status: response.status } },
      );
    }
    return parsed.data;
  }

  /** An error answer as a QuicgateError carrying the gateway's code and message. */
  private httpError(response: Response, body: unknown): QuicgateError {
    const parsed = ErrorBodySchema.safeParse(body);
    const details = { status: response.status, url: this.baseUrl };
    if (!parsed.success) {
      return new QuicgateError('QG_ERR_ADMIN_INTERNAL', `the admin API at ${this.baseUrl} answered HTTP ${response.status} ${response.statusText} without an error message`, {
        details,
      });
    }
    const { code, message } = parsed.data.error;
    const serverDetails = parsed.data.error.details ?? {};
    if (!isErrorCode(code)) {
      return new QuicgateError('QG_ERR_ADMIN_INTERNAL', `${code}: ${message}`, { details: { ...serverDetails, ...details } });
    }
    const hint =
      code === 'QG_ERR_ADMIN_UNAUTHORIZED' ? ` (admin API at ${this.baseUrl}; check --token, $${ADMIN_TOKEN_ENV} or admin.token)` : '';
    return new QuicgateError(code, `${message}${hint}`, { details: { ...serverDetails, ...details } });
  }

  private unreachable(err: unknown): QuicgateError {
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
    const errno = cause instanceof Error && 'code' in cause ? String(cause.code) : null;
    const name = err instanceof Error ? err.name : '';
    let reason: string;
    if (name === 'TimeoutError' || name === 'AbortError') reason = `no answer within ${this.timeoutMs / 1000} s`;
    else if (errno === 'ECONNREFUSED') reason = 'connection refused (is the gateway running, with admin.token set?)';
    else if (errno === 'ENOTFOUND' || errno === 'EAI_AGAIN') reason = 'host not found';
    else if (errno !== null) reason = errno;
    else reason = cause instanceof Error ? cause.message : String(cause);
    return new QuicgateError('QG_ERR_CONNECT_FAILED', `cannot reach the admin API at ${this.baseUrl}: ${reason}`, {
      cause: err,
      details: { url: this.baseUrl },
    });
  }
}

function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ErrorCodes, code);
}

/** A client for the command's --admin/--token/--config options. */
export async function adminClientFor(options: AdminConnectionOptions, env: CliIo['env']): Promise<AdminClient> {
  return new AdminClient(await resolveAdminTarget(options, env));
}
