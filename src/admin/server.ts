/**
 * The admin HTTP server (node:http; a dozen routes need no framework). Order of checks per request: token
 * (except /healthz), then route, then method, then the handler's own validation. Unauthenticated callers
 * therefore learn nothing about which paths exist. Without a configured token the server does not start.
 */
import { listenError } from '../transport/listen-error.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AdminConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { MetricsExporter } from '../metrics/exporter.js';
import type { AdminBackend } from './backend.js';
import { createTokenChecker, type TokenCheck } from './auth.js';
import { readBody } from './body.js';
import { AdminHttpError, errorBody, toAdminHttpError } from './http-error.js';
import { matchRoute, methodNotAllowed, routeNotFound } from './router.js';
import { adminRoutes, type Route, type RouteResponse } from './routes.js';

export interface AdminServerOptions {
  readonly config: AdminConfig;
  readonly backend: AdminBackend;
  readonly metrics: MetricsExporter;
  readonly logger: Logger;
}

export interface AdminServer {
  /** The bound port (useful when config.port is 0). */
  readonly port: number;
  /** Stops listening and closes open connections, idle keep-alive ones included. */
  close(): Promise<void>;
}

/** Slow or stalled clients must not hold sockets open; admin requests are small and quick. */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * Starts the admin API on config.listen:config.port. Resolves to null (and logs why) when the API is
 * disabled or no token is configured: an admin port without a token would let anyone kill sessions.
 * Rejects with the listen error (e.g. EADDRINUSE).
 */
export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer | null> {
  const { config, logger } = opts;
  if (!config.enabled) {
    logger.info('admin API disabled in config; not started');
    return null;
  }
  if (config.token === null || config.token === '') {
    logger.warn('admin API not started: no admin.token configured (the API never runs without a token)');
    return null;
  }

  const checkToken = createTokenChecker(config.token);
  const routes = adminRoutes(opts);
  const server = createServer((req, res) => {
    void handleRequest(req, res, routes, checkToken, logger);
  });
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;

  try {
    await listen(server, config.port, config.listen);
  } catch (err) {
    throw listenError('the admin API', 'TCP', config.listen, config.port, err);
  }
  const port = (server.address() as AddressInfo).port;
  logger.info({ listen: config.listen, port }, 'admin API listening');

  let closing: Promise<void> | null = null;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
}

async function handleRequest(
  req: IncomingMessage,
  res: ServerResponse,
  routes: readonly Route[],
  checkToken: (header: string | undefined) => TokenCheck,
  logger: Logger,
): Promise<void> {
  const started = performance.now();
  const method = req.method ?? 'GET';
  const url = parseRequestUrl(req.url ?? '/');
  const pathname = url.pathname;
  try {
    const auth = checkToken(req.headers.authorization);
    // /healthz answers without a token (load balancers); any other path needs one before we say more.
    if (auth === 'invalid' || (auth === 'missing' && pathname !== '/healthz')) throw unauthorized(auth);

    const match = matchRoute(routes, method, pathname);
    if (match.kind === 'not_found') throw routeNotFound(method, pathname);
    if (match.kind === 'wrong_method') throw methodNotAllowed(method, pathname, match.allowed);
    if (match.route.auth === 'required' && auth !== 'valid') throw unauthorized(auth);

    const response = await match.route.handle({
      params: match.params,
      query: url.searchParams,
      authenticated: auth === 'valid',
      readBody: () => readBody(req),
    });
    send(res, response);
  } catch (err) {
    const httpError = toAdminHttpError(err);
    if (httpError.status >= 500) logger.error({ err, method, path: pathname }, 'admin API request failed');
    else if (httpError.status === 401) logger.info({ method, path: pathname, remote: req.socket.remoteAddress }, 'admin API: unauthorized request');
    send(res, { status: httpError.status, json: errorBody(httpError) }, httpError.headers);
  } finally {
    logger.debug({ method, path: pathname, status: res.statusCode, ms: Math.round(performance.now() - started) }, 'admin API request');
  }
}

/** Origin-form targets are joined rather than resolved, so "//x/y" stays a path and never becomes a host. */
function parseRequestUrl(target: string): URL {
  try {
    return target.startsWith('/') ? new URL(`http://admin.invalid${target}`) : new URL(target);
  } catch {
    return new URL('http://admin.invalid/invalid-request-target');
  }
}

function unauthorized(auth: TokenCheck): AdminHttpError {
  const message = auth === 'missing' ? 'missing bearer token (Authorization: Bearer <token>)' : 'invalid bearer token';
  return new AdminHttpError(401, 'QG_ERR_ADMIN_UNAUTHORIZED', message, { headers: { 'WWW-Authenticate': 'Bearer realm="quicgate-admin"' } });
}

function send(res: ServerResponse, response: RouteResponse, extraHeaders: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const [body, contentType] = 'json' in response ? [`${JSON.stringify(response.json)}\n`, 'application/json; charset=utf-8'] : [response.text, response.contentType];
  res.writeHead(response.status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...extraHeaders,
  });
  res.end(body);
}
