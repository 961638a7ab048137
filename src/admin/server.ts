/**
 * The admin HTTP server (node:http; a dozen routes need no framework). Order of checks per request: the
 * console's static files (public: the login page), then credentials (bearer token, or the console's session
 * cookie), then route, then method, then for cookie requests that change state the origin and CSRF checks,
 * then the handler's own validation. Unauthenticated callers therefore learn nothing about which paths exist
 * (only /healthz and the console login answer them). Without a configured token the server does not start.
 */
import { listenError } from '../transport/listen-error.js';
import path from 'node:path';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AdminConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { MetricsExporter } from '../metrics/exporter.js';
import type { TLSSocket } from 'node:tls';
import { systemClock, type Clock } from '../clock.js';
import type { AdminBackend } from './backend.js';
import { createTokenChecker, type TokenCheck } from './auth.js';
import { AdminAuthThrottle } from './auth-throttle.js';
import { registerAdminAuthMetrics } from '../metrics/admin-auth.js';
import { ConsoleAssets, CONSOLE_CSP } from './console-assets.js';
import { ConsoleFeed } from './console-feed.js';
import { consoleRoutes } from './console-routes.js';
import { checkSameOrigin, ConsoleSessions, CSRF_HEADER, readCookie, REVOCATIONS_FILE, SESSION_COOKIE } from './console-session.js';
import { readBody } from './body.js';
import { AdminHttpError, errorBody, toAdminHttpError } from './http-error.js';
import { matchRoute, methodNotAllowed, routeNotFound } from './router.js';
import { adminRoutes, type Route, type RouteResponse } from './routes.js';

export interface AdminServerOptions {
  readonly config: AdminConfig;
  readonly backend: AdminBackend;
  readonly metrics: MetricsExporter;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** The built console (default: dist/console of this package). */
  readonly consoleAssets?: ConsoleAssets;
  readonly consoleFeedIntervalMs?: number;
  readonly consoleSessionTtlMs?: number;
  /** Wall clock for console session expiry (tests). */
  readonly wallNow?: () => number;
  /** The gateway's data directory: console logouts are kept there across restarts (none: memory only). */
  readonly dataDir?: string;
  /** Wrong admin tokens allowed per source per minute (the tunnel's auth_attempts budget). Default 10. */
  readonly authAttemptsPerMinute?: number;
  /** Length of the throttle's window (tests). */
  readonly authWindowMs?: number;
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

  const clock = opts.clock ?? systemClock;
  const assets = opts.consoleAssets ?? ConsoleAssets.load();
  if (assets.missing !== null) logger.warn(assets.missing);
  const sessions = new ConsoleSessions({
    adminToken: config.token,
    ttlMs: opts.consoleSessionTtlMs,
    now: opts.wallNow ?? (() => clock.wallNow()),
    revocationsFile: opts.dataDir === undefined ? null : path.join(opts.dataDir, REVOCATIONS_FILE),
  });
  if (sessions.loadProblem !== null) {
    logger.error({ err: sessions.loadProblem }, 'console: earlier logouts unreadable; every console login from before this start is refused');
  }
  const throttle = new AdminAuthThrottle({ perSourcePerMinute: opts.authAttemptsPerMinute ?? 10, clock, logger, windowMs: opts.authWindowMs });
  const unregisterMetrics = registerAdminAuthMetrics(opts.metrics.registry, () => throttle.stats);
  const feed = new ConsoleFeed({ backend: opts.backend, clock, logger, intervalMs: opts.consoleFeedIntervalMs });
  const ctx: RequestContext = {
    routes: [...adminRoutes(opts), ...consoleRoutes({ adminToken: config.token, sessions, throttle, feed, logger })],
    checkToken: createTokenChecker(config.token),
    throttle,
    sessions,
    assets,
    logger,
  };
  const server = createServer((req, res) => {
    void handleRequest(req, res, ctx);
  });
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;

  try {
    await listen(server, config.port, config.listen);
  } catch (err) {
    throttle.close();
    unregisterMetrics();
    throw listenError('the admin API', 'TCP', config.listen, config.port, err);
  }
  const port = (server.address() as AddressInfo).port;
  logger.info({ listen: config.listen, port, console: assets.missing === null ? `http://${hostForUrl(config.listen)}:${port}/console/` : null }, 'admin API listening');

  let closing: Promise<void> | null = null;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        feed.close();
        throttle.close();
        unregisterMetrics();
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

interface RequestContext {
  readonly routes: readonly Route[];
  readonly checkToken: (header: string | undefined) => TokenCheck;
  readonly throttle: AdminAuthThrottle;
  readonly sessions: ConsoleSessions;
  readonly assets: ConsoleAssets;
  readonly logger: Logger;
}

async function handleRequest(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
  const { routes, checkToken, sessions, logger } = ctx;
  const started = performance.now();
  const method = req.method ?? 'GET';
  const url = parseRequestUrl(req.url ?? '/');
  const pathname = url.pathname;
  const secure = cameOverTls(req);
  try {
    if (serveConsoleFile(req, res, pathname, ctx.assets)) return;

    const auth = await bearerCheck(req, ctx);
    if (auth === 'invalid') throw unauthorized(auth);
    const consoleSession = auth === 'valid' ? null : sessions.verify(readCookie(req.headers.cookie, SESSION_COOKIE));
    const authenticated = auth === 'valid' || consoleSession !== null;
    const match = matchRoute(routes, method, pathname);
    // /healthz answers without a token (load balancers), the console login must; any other path needs one first.
    const open = pathname === '/healthz' || (match.kind === 'found' && match.route.auth === 'public');
    if (!authenticated && !open) throw unauthorized(auth);
    if (match.kind === 'not_found') throw routeNotFound(method, pathname);
    if (match.kind === 'wrong_method') throw methodNotAllowed(method, pathname, match.allowed);
    if (match.route.auth === 'required' && !authenticated) throw unauthorized(auth);
    // A browser sends the cookie on its own; what changes state must prove it comes from the console page.
    if (method !== 'GET' && (consoleSession !== null || match.route.auth === 'public')) {
      const origin = checkSameOrigin(req.headers, secure);
      if (!origin.ok) throw forbidden(origin.why);
      if (consoleSession !== null) {
        const csrf = sessions.checkCsrf(consoleSession, headerText(req.headers[CSRF_HEADER]));
        if (!csrf.ok) throw forbidden(csrf.why);
      }
    }

    const response = await match.route.handle({
      params: match.params,
      query: url.searchParams,
      authenticated,
      consoleSession,
      secure,
      remoteAddress: req.socket.remoteAddress,
      readBody: () => readBody(req),
    });
    if ('stream' in response) response.stream(res);
    else send(res, response, response.headers);
  } catch (err) {
    const httpError = toAdminHttpError(err);
    if (httpError.status >= 500) logger.error({ err, method, path: pathname }, 'admin API request failed');
    else if (httpError.status === 401 || httpError.status === 403) {
      logger.info({ method, path: pathname, remote: req.socket.remoteAddress, why: httpError.message }, `admin API: ${httpError.status === 401 ? 'unauthorized' : 'forbidden'} request`);
    }
    send(res, { status: httpError.status, json: errorBody(httpError) }, httpError.headers);
  } finally {
    logger.debug({ method, path: pathname, status: res.statusCode, ms: Math.round(performance.now() - started) }, 'admin API request');
  }
}

/** A bearer token is a guess until checked: within the source's budget (auth-throttle.ts), else 429. */
async function bearerCheck(req: IncomingMessage, ctx: RequestContext): Promise<TokenCheck> {
  const header = req.headers.authorization;
  const first = ctx.checkToken(header);
  if (first === 'missing') return first;
  return (await ctx.throttle.check(req.socket.remoteAddress, () => first === 'valid')) ? 'valid' : 'invalid';
}

/** GET / and /console/...: the console's files, to anyone (the page itself holds no data). True when answered. */
function serveConsoleFile(req: IncomingMessage, res: ServerResponse, pathname: string, assets: ConsoleAssets): boolean {
  const method = req.method ?? 'GET';
  if (pathname !== '/' && pathname !== '/console' && !pathname.startsWith('/console/')) return false;
  if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed(method, pathname, ['GET']);
  if (pathname === '/' || pathname === '/console') {
    res.writeHead(302, { Location: '/console/', 'Content-Length': 0, 'Cache-Control': 'no-store', ...SECURITY_HEADERS });
    res.end();
    return true;
  }
  if (assets.missing !== null) throw new AdminHttpError(503, 'QG_ERR_ADMIN_UNAVAILABLE', assets.missing);
  const name = pathname === '/console/' ? 'index.html' : pathname.slice('/console/'.length);
  const asset = assets.get(name);
  if (asset === undefined) throw new AdminHttpError(404, 'QG_ERR_ADMIN_NOT_FOUND', `no console file ${pathname}`);
  const headers: Record<string, string | number> = {
    'Content-Type': asset.contentType,
    ETag: asset.etag,
    'Cache-Control': 'no-cache',
    Vary: 'Accept-Encoding',
    ...SECURITY_HEADERS,
  };
  if (req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  const gzip = /\bgzip\b/.test(headerText(req.headers['accept-encoding']) ?? '');
  const body = gzip ? asset.gzip : asset.body;
  res.writeHead(200, { ...headers, 'Content-Length': body.length, ...(gzip ? { 'Content-Encoding': 'gzip' } : {}) });
  res.end(method === 'HEAD' ? undefined : body);
  return true;
}

/** On every answer: no framing, no sniffing, no referrer, and the console's strict policy. */
const SECURITY_HEADERS = {
  'Content-Security-Policy': CONSOLE_CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
} as const;

/**
 * Over TLS, directly or through a reverse proxy that says so (X-Forwarded-Proto: https). Trusting the header is
 * safe here: it only adds Secure to the cookie and makes the origin check expect https; a page on another
 * origin cannot make a browser send it (a custom header needs a CORS preflight this listener never allows).
 */
function cameOverTls(req: IncomingMessage): boolean {
  if ((req.socket as Partial<TLSSocket>).encrypted === true) return true;
  return headerText(req.headers['x-forwarded-proto'])?.split(',')[0]?.trim().toLowerCase() === 'https';
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function forbidden(why: string): AdminHttpError {
  return new AdminHttpError(403, 'QG_ERR_ADMIN_FORBIDDEN', `refused: ${why}`);
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

function send(res: ServerResponse, response: Exclude<RouteResponse, { stream: unknown }>, extraHeaders: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const [body, contentType] = 'json' in response ? [`${JSON.stringify(response.json)}\n`, 'application/json; charset=utf-8'] : [response.text, response.contentType];
  res.writeHead(response.status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...SECURITY_HEADERS,
    ...extraHeaders,
  });
  res.end(body);
}
