/**
 * The admin API's routes: method, path pattern, whether a token is needed, and the handler. Handlers only
 * validate input, call the backend and shape the answer; HTTP plumbing lives in server.ts. The OpenAPI
 * description (openapi.ts) documents exactly this table; a test keeps the two in step.
 */
import type { AdminBackend } from './backend.js';
import type { MetricsExporter } from '../metrics/exporter.js';
import type { Logger } from '../log.js';
import { isQuicgateError } from '../errors.js';
import { AdminHttpError } from './http-error.js';
import { OPENAPI_DOCUMENT } from './openapi.js';
import {
  emptyQuery,
  parseJsonBody,
  parseParam,
  parseQuery,
  reloadBody,
  sessionIdParam,
  statsQuery,
  userNameParam,
} from './validation.js';

export type HttpMethod = 'GET' | 'POST' | 'DELETE';

export interface RouteRequest {
  /** Decoded path parameters, by the names in the pattern (":id" -> "id"). */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** True when a valid bearer token came with the request (always true on routes that require one). */
  readonly authenticated: boolean;
  readBody(): Promise<Buffer>;
}

export type RouteResponse =
  | { readonly status: number; readonly json: unknown }
  | { readonly status: number; readonly text: string; readonly contentType: string };

export interface Route {
  readonly method: HttpMethod;
  /** Segments starting with ":" are parameters, e.g. "/api/sessions/:id". */
  readonly path: string;
  /** 'optional': answered without a token (with less detail); a wrong token is still refused. */
  readonly auth: 'required' | 'optional';
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
        noQuery(req);
        return json({ sessions: backend.listSessions() });
      },
    },
    {
      method: 'GET',
      path: '/api/sessions/:id',
      auth: 'required',
      async handle(req) {
        noQuery(req);
        const id = parseParam(sessionIdParam, req.params.id, 'id');
        const session = backend.getSession(id);
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
        if (!backend.killSession(id)) throw sessionNotFound(id);
        logger.info({ session: id, reason: 'admin_kill' }, 'admin API: session killed');
        return json({ id, closed: true, reason: 'admin_kill' });
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
        const closed = backend.killUserSessions(name);
        if (closed === null) throw userNotFound(name);
        logger.info({ user: name, sessionsClosed: closed, reason: 'admin_kill' }, "admin API: user's sessions killed");
        return json({ user: name, sessionsClosed: closed, reason: 'admin_kill' });
      },
    },
    {
      method: 'GET',
      path: '/api/stats',
      auth: 'required',
      async handle(req) {
        const { window_hours } = parseQuery(statsQuery, req.query);
        return json(await backend.stats(window_hours));
      },
    },
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
