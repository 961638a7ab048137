/**
 * The console's own API routes: login (admin token -> session cookie), logout, the current login (its CSRF
 * token, for a reloaded page) and the live feed. Everything else the page shows comes from the documented
 * admin API, called with the cookie.
 */
import type { Logger } from '../log.js';
import { createSecretCheck } from './auth.js';
import type { AdminAuthThrottle } from './auth-throttle.js';
import type { ConsoleFeed } from './console-feed.js';
import { sessionCookie, type ConsoleSession, type ConsoleSessions } from './console-session.js';
import { AdminHttpError } from './http-error.js';
import type { Route, RouteResponse } from './routes.js';
import { emptyQuery, loginBody, parseJsonBody, parseQuery } from './validation.js';

export interface ConsoleRouteDeps {
  readonly adminToken: string;
  readonly sessions: ConsoleSessions;
  readonly throttle: AdminAuthThrottle;
  readonly feed: ConsoleFeed;
  readonly logger: Logger;
}

export function consoleRoutes({ adminToken, sessions, throttle, feed, logger }: ConsoleRouteDeps): Route[] {
  const isToken = createSecretCheck(adminToken);
  const sessionJson = (session: ConsoleSession, headers: Record<string, string> = {}): RouteResponse => ({
    status: 200,
    json: { csrfToken: session.csrfToken, expiresAt: new Date(session.expiresAtMs).toISOString() },
    headers,
  });

  return [
    {
      method: 'POST',
      path: '/api/console/login',
      auth: 'public',
      async handle(req) {
        parseQuery(emptyQuery, req.query);
        const { token } = parseJsonBody(loginBody, await req.readBody());
        if (!(await throttle.check(req.remoteAddress, () => isToken(token)))) {
          logger.info({ remote: req.remoteAddress }, 'console: login refused (wrong admin token)');
          throw new AdminHttpError(401, 'QG_ERR_ADMIN_UNAUTHORIZED', 'wrong admin token');
        }
        const { session, cookieValue } = sessions.create();
        logger.info({ expiresAt: new Date(session.expiresAtMs).toISOString() }, 'console: logged in');
        const cookie = sessionCookie(cookieValue, { maxAgeSeconds: Math.floor(sessions.ttlMs / 1000), secure: req.secure });
        return sessionJson(session, { 'Set-Cookie': cookie });
      },
    },
    {
      method: 'POST',
      path: '/api/console/logout',
      auth: 'required',
      async handle(req) {
        parseQuery(emptyQuery, req.query);
        if (req.consoleSession !== null) {
          try {
            await sessions.revoke(req.consoleSession);
          } catch (err) {
            // Refused until this process ends, but a restart would accept the cookie again: say so.
            logger.error({ err }, 'console: logout not saved; the login is refused until the gateway restarts');
            throw new AdminHttpError(503, 'QG_ERR_ADMIN_UNAVAILABLE', 'logged out until the gateway restarts: the logout could not be saved (see the gateway log)', {
              headers: { 'Set-Cookie': sessionCookie('', { maxAgeSeconds: 0, secure: req.secure }) },
            });
          }
        }
        return { status: 200, json: { loggedOut: true }, headers: { 'Set-Cookie': sessionCookie('', { maxAgeSeconds: 0, secure: req.secure }) } };
      },
    },
    {
      method: 'GET',
      path: '/api/console/session',
      auth: 'required',
      async handle(req) {
        parseQuery(emptyQuery, req.query);
        if (req.consoleSession === null) {
          throw new AdminHttpError(400, 'QG_ERR_ADMIN_BAD_REQUEST', 'no console login with this request (a bearer token needs no CSRF token)', {
            details: { parameter: 'cookie' },
          });
        }
        return sessionJson(req.consoleSession);
      },
    },
    {
      method: 'GET',
      path: '/api/console/events',
      auth: 'required',
      async handle(req) {
        parseQuery(emptyQuery, req.query);
        if (feed.full) {
          throw new AdminHttpError(503, 'QG_ERR_ADMIN_UNAVAILABLE', 'too many open console pages; close some', { headers: { 'Retry-After': '10' } });
        }
        return { stream: (res) => feed.subscribe(res) };
      },
    },
  ];
}
