/**
 * The admin API's routes: method, path pattern, whether a token is needed, and the handler. Handlers only
 * validate input, call the backend and shape the answer; HTTP plumbing lives in server.ts. The OpenAPI
 * description (openapi.ts) documents exactly this table; a test keeps the two in step.
 */
import type { ServerResponse } from 'node:http';
import type { AdminBackend, PastSessionsView } from './backend.js';
import type { ConsoleSession } from './console-session.js';
import { parseRate } from '../config/units.js';
import type { MetricsExporter } from '../metrics/exporter.js';
import type { Logger } from '../log.js';
import { isQuicgateError } from '../errors.js';
import { AdminHttpError } from './http-error.js';
import { OPENAPI_DOCUMENT } from './openapi.js';
import {
  badRequest,
  emptyQuery,
  parseJsonBody,
  pastSessionsQuery,
  parseParam,
  parseQuery,
  reloadBody,
  sessionIdParam,
  sessionsQuery,
  statsQuery,
  userNameParam,
  userPatchBody,
} from './validation.js';

export type HttpMethod = 'GET' | 'POST' | 'PATCH' | 'DELETE';

export interface RouteRequest {
  /** Decoded path parameters, by the names in the pattern (":id" -> "id"). */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** True when a valid bearer token or console cookie came with the request (always true on routes that require one). */
  readonly authenticated: boolean;
  /** The console login the cookie stands for; null with a bearer token or none. */
  readonly consoleSession: ConsoleSession | null;
  /** The request came over TLS (cookies then get Secure). */
  readonly secure: boolean;
  /** The peer's address (the throttle's source; behind a reverse proxy, the proxy's). */
  readonly remoteAddress: string | undefined;
  readBody(): Promise<Buffer>;
}

export type RouteResponse =
  | { readonly status: number; readonly json: unknown; readonly headers?: Readonly<Record<string, string>> }
  | { readonly status: number; readonly text: string; readonly contentType: string; readonly headers?: Readonly<Record<string, string>> }
  /** The handler takes the response over (server-sent events). */
  | { readonly stream: (res: ServerResponse) => void };

export interface Route {
  readonly method: HttpMethod;
  /** Segments starting with ":" are parameters, e.g. "/api/sessions/:id". */
  readonly path: string;
  /**
   * 'optional': answered without a token (with less detail); a wrong token is still refused. 'public': needs
   * no credential at all (the console's login).
   */
  readonly auth: 'required' | 'optional' | 'public';
  handle(req: RouteRequest): Promise<RouteResponse>;
}

export interface RouteDeps {
  readonly backend: AdminBackend;
  readonly metrics: MetricsExporter;
  readonly logger: Logger;
}

export function adminRoutes({ backend, metrics, logger }: RouteDeps): Route[] {
  const json = (json: unknown, status = 200): RouteResponse => ({ status, json });
  const noQuery = (req: RouteRequest): void => void parseQuery(emptyQuery, req.query);
  /** A GET whose query is the window (window_hours) and an optional gateway; answers what `read` gives for them. */
  const windowRoute = (path: string, read: (windowHours: number, gateway: string | null) => Promise<unknown>): Route => ({
    method: 'GET',
    path,
    auth: 'required',
    async handle(req) {
      const { window_hours, gateway } = parseQuery(statsQuery, req.query);
      return json(await read(window_hours, gateway ?? null));
    },
  });

  return [
    {
      method: 'GET',
      path: '/healthz',
      auth: 'optional',
      async handle(req) {
        noQuery(req);
        const health = backend.health();
        // Load balancers act on the status code; details only for holders of the token.
        const status = health.status === 'ok' ? 200 : 503;
        return json(req.authenticated ? health : { status: health.status }, status);
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        return { status: 200, text: await metrics.render(), contentType: metrics.contentType };
      },
    },
    {
      method: 'GET',
      path: '/api/openapi.json',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        return json(OPENAPI_DOCUMENT);
      },
    },
    {
      method: 'GET',
      path: '/api/sessions',
      auth: 'required',
      async handle(req) {
        const { gateway } = parseQuery(sessionsQuery, req.query);
        return json(await backend.listAllSessions(gateway ?? null));
      },
    },
    {
      method: 'GET',
      path: '/api/sessions/:id',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        const id = parseParam(sessionIdParam, req.params.id, 'id');
        const session = await backend.findSession(id);
        if (session === null) throw sessionNotFound(id);
        return json(session);
      },
    },
    {
      method: 'DELETE',
      path: '/api/sessions/:id',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        const id = parseParam(sessionIdParam, req.params.id, 'id');
        const ended = await backend.killAnySession(id);
        if (ended === null) throw sessionNotFound(id);
        logger.info({ session: id, reason: 'admin_kill', ...ended }, 'admin API: session killed');
        return json({ id, closed: true, reason: 'admin_kill', ...ended });
      },
    },
    {
      method: 'GET',
      path: '/api/users/:name',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        const name = parseParam(userNameParam, req.params.name, 'name');
        const user = await backend.getUser(name);
        if (user === null) throw userNotFound(name);
        return json(user);
      },
    },
    {
      method: 'DELETE',
      path: '/api/users/:name/sessions',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        const name = parseParam(userNameParam, req.params.name, 'name');
        const closed = await backend.killAnyUserSessions(name);
        if (closed === null) throw userNotFound(name);
        logger.info({ user: name, sessionsClosed: closed, reason: 'admin_kill' }, "admin API: user's sessions killed");
        return json({ user: name, sessionsClosed: closed, reason: 'admin_kill' });
      },
    },
    {
      method: 'PATCH',
      path: '/api/users/:name',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        const name = parseParam(userNameParam, req.params.name, 'name');
        const body = parseJsonBody(userPatchBody, await req.readBody());
        const changes = {
          ...(body.bandwidth === undefined ? {} : { bandwidth: bandwidthOf(body.bandwidth) }),
          ...(body.disabled === undefined ? {} : { disabled: body.disabled }),
        };
        let result;
        try {
          result = await backend.updateUser(name, changes);
        } catch (err) {
          throw isQuicgateError(err, 'QG_ERR_CONFIG_INVALID') || isQuicgateError(err, 'QG_ERR_USER_NOT_FOUND') ? err : reloadFailed(err);
        }
        if (result === null) throw userNotFound(name);
        logger.info({ user: name, changes: result.changes }, 'admin API: user updated in the users file');
        return json(result);
      },
    },
    {
      method: 'GET',
      path: '/api/overview',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        return json(backend.overview());
      },
    },
    {
      method: 'GET',
      path: '/api/fleet',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        return json(backend.fleet());
      },
    },
    windowRoute('/api/history/hourly', (windowHours, gateway) => backend.hourly(windowHours, gateway)),
    {
      method: 'GET',
      path: '/api/history/sessions',
      auth: 'required',
      async handle(req) {
        const q = parseQuery(pastSessionsQuery, req.query);
        const past = await backend.pastSessions({ windowHours: q.window_hours, search: q.q?.trim() || null, limit: q.limit, gateway: q.gateway ?? null });
        if (q.format === 'json') return json(past);
        return {
          status: 200,
          text: pastSessionsCsv(past),
          contentType: 'text/csv; charset=utf-8',
          headers: { 'Content-Disposition': 'attachment; filename="quicgate-sessions.csv"' },
        };
      },
    },
    windowRoute('/api/stats', (windowHours, gateway) => backend.stats(windowHours, gateway)),
    {
      method: 'POST',
      path: '/api/reload',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        parseJsonBody(reloadBody, await req.readBody());
        try {
          const result = await backend.reload();
          logger.info({ ...result }, 'admin API: configuration reloaded');
          return json(result);
        } catch (err) {
          throw reloadFailed(err);
        }
      },
    },
  ];
}

/** "unlimited"/null, bytes per second, or a rate with its unit as in the users file. */
function bandwidthOf(value: number | string | null): number | null {
  if (value === null || value === 'unlimited') return null;
  if (typeof value === 'number') return value;
  let rate: number;
  try {
    rate = parseRate(value);
  } catch (err) {
    throw badRequest('body.bandwidth', err instanceof Error ? err.message : 'not a rate');
  }
  if (!(rate >= 1)) throw badRequest('body.bandwidth', `expected "unlimited" or a rate of at least 1 B/s, got "${value}"`);
  return Math.round(rate);
}

const CSV_COLUMNS = ['id', 'user', 'ipv4', 'ipv6', 'peer', 'transport', 'startedAt', 'endedAt', 'durationSeconds', 'bytesIn', 'bytesOut', 'status', 'endReason', 'endMessage', 'gateway'] as const;

/**
 * RFC 4180 CSV of past sessions, by hand: one fixed table of plain values needs quoting and nothing else. Cells
 * a spreadsheet would run as a formula (=, +, -, @ first) get a leading apostrophe.
 */
export function pastSessionsCsv(past: PastSessionsView): string {
  const cell = (value: string | number | null): string => {
    if (value === null) return '';
    let text = String(value);
    if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const lines = [CSV_COLUMNS.join(',')];
  for (const s of past.sessions) lines.push(CSV_COLUMNS.map((c) => cell(s[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

function sessionNotFound(id: string): AdminHttpError {
  return new AdminHttpError(404, 'QG_ERR_SESSION_NOT_FOUND', `no live session has id ${id}`, { details: { id } });
}

function userNotFound(name: string): AdminHttpError {
  return new AdminHttpError(404, 'QG_ERR_USER_NOT_FOUND', `no user named ${name} in the configuration`, { details: { name } });
}

/**
 * A refused reload (invalid new config) is a 409 with the backend's message, which says what is wrong; any
 * other failure is a 500 with the same code, since the operator's question is the same: did it apply?
 */
function reloadFailed(err: unknown): AdminHttpError {
  if (isQuicgateError(err, 'QG_ERR_RELOAD_FAILED')) {
    return new AdminHttpError(409, 'QG_ERR_RELOAD_FAILED', err.message, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new AdminHttpError(500, 'QG_ERR_RELOAD_FAILED', `reload failed: ${message}`, { cause: err });
}
