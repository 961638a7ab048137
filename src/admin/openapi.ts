/**
 * OpenAPI 3.1 description of the admin API, served at GET /api/openapi.json. The component schemas (every
 * response shape and the request bodies) are derived from the zod schemas the code uses (schemas.ts,
 * validation.ts) with z.toJSONSchema, so they cannot drift; the paths are written here so they read like
 * documentation, and test/admin/openapi.test.ts checks they list exactly the routes in routes.ts and
 * console-routes.ts and that real answers validate against the schemas.
 */
import { z } from 'zod';
import { apiSchemas } from './schemas.js';
import { DEFAULT_PAST_SESSIONS, DEFAULT_WINDOW_HOURS, gatewayIdParam, loginBody, MAX_PAST_SESSIONS, MAX_WINDOW_HOURS, sessionIdParam, userNameParam, userPatchBody } from './validation.js';

type JsonObject = Record<string, unknown>;

/** JSON Schema of zod schemas, shaped for OpenAPI components: no $schema/$id, date-times by format only. */
function tidy(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(tidy);
  if (node === null || typeof node !== 'object') return node;
  const out: JsonObject = {};
  const object = node as JsonObject;
  for (const [key, value] of Object.entries(object)) {
    if (key === '$schema' || key === '$id') continue;
    if (key === 'pattern' && object.format === 'date-time') continue;
    out[key] = tidy(value);
  }
  return out;
}

const componentSchemas = tidy(z.toJSONSchema(apiSchemas, { uri: (id) => `#/components/schemas/${id}` }).schemas) as JsonObject;
const requestSchema = (schema: z.ZodType): JsonObject => tidy(z.toJSONSchema(schema, { io: 'input' })) as JsonObject;

const ref = (name: string): { $ref: string } => ({ $ref: `#/components/schemas/${name}` });
const jsonContent = (schema: object): object => ({ 'application/json': { schema } });
const errorResponse = (description: string): object => ({ description, content: jsonContent(ref('Error')) });

const unauthorized = errorResponse('Missing or wrong bearer token, or no valid console login (QG_ERR_ADMIN_UNAUTHORIZED).');
const forbidden = errorResponse('Made with the console cookie but without the X-CSRF-Token header or from another origin (QG_ERR_ADMIN_FORBIDDEN).');
const windowParam = {
  name: 'window_hours',
  in: 'query',
  required: false,
  schema: { type: 'integer', minimum: 1, maximum: MAX_WINDOW_HOURS, default: DEFAULT_WINDOW_HOURS },
};
const gatewayParam = {
  name: 'gateway',
  in: 'query',
  required: false,
  description: "Only this gateway's rows (fleet.gateway_id); absent: every gateway writing to the history (the fleet, with PostgreSQL).",
  schema: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' },
};
const badRequest = errorResponse('Invalid parameter, query or body (QG_ERR_ADMIN_BAD_REQUEST); details.parameter names it.');

const idParam = {
  name: 'id',
  in: 'path',
  required: true,
  schema: requestSchema(sessionIdParam),
};
const nameParam = {
  name: 'name',
  in: 'path',
  required: true,
  schema: requestSchema(userNameParam),
};

const fleetUnavailable = errorResponse("Config fleet: Redis cannot be reached, so another gateway's sessions cannot be looked up (QG_ERR_FLEET_UNAVAILABLE).");

const counts = (description: string): object => ({ type: 'object', description, additionalProperties: { type: 'integer' } });

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'quicgate admin API',
    version: '1',
    description:
      'Operator API of the quicgate VPN gateway. Every route needs `Authorization: Bearer <token>` except ' +
      'GET /healthz, which answers without a token with the status only, and POST /api/console/login, which ' +
      'exchanges the token for the web console\'s session cookie (accepted by every route like the token). Wrong tokens ' +
      '(bearer or login) are limited per source address like tunnel passwords (`auth_attempts`): past the budget every ' +
      'request with a token gets 429 QG_ERR_ADMIN_THROTTLED with Retry-After, before the token is compared. Errors are ' +
      '`{ "error": { "code": "QG_ERR_...", "message": "...", "details": {...} } }`.',
  },
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer' },
      consoleCookie: {
        type: 'apiKey',
        in: 'cookie',
        name: 'qg_console',
        description: 'Console login (POST /api/console/login). POST, PATCH and DELETE with it also need the X-CSRF-Token header and a same-origin request.',
      },
    },
    schemas: {
      ...componentSchemas,
      UserPatch: requestSchema(userPatchBody),
      ConsoleLogin: requestSchema(loginBody),
    },
  },
  security: [{ bearer: [] }, { consoleCookie: [] }],
  paths: {
    '/healthz': {
      get: {
        summary: 'Health: status only without a token, all checks with one.',
        security: [{}, { bearer: [] }],
        responses: {
          '200': { description: 'Healthy.', content: jsonContent(ref('Health')) },
          '503': { description: 'Degraded (a check failed).', content: jsonContent(ref('Health')) },
          '401': errorResponse('A token was given but is wrong.'),
        },
      },
    },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics (text exposition format 0.0.4).',
        responses: {
          '200': { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } },
          '401': unauthorized,
        },
      },
    },
    '/api/openapi.json': {
      get: {
        summary: 'This document.',
        responses: { '200': { description: 'OpenAPI 3.1 document.', content: jsonContent({ type: 'object' }) }, '401': unauthorized },
      },
    },
    '/api/sessions': {
      get: {
        summary: 'List live sessions (with config fleet: of every gateway, each with its `gateway`).',
        parameters: [{ name: 'gateway', in: 'query', required: false, description: "Only this gateway's sessions.", schema: requestSchema(gatewayIdParam) }],
        responses: {
          '200': { description: 'Live sessions.', content: jsonContent(ref('SessionList')) },
          '400': badRequest,
          '401': unauthorized,
        },
      },
    },
    '/api/sessions/{id}': {
      parameters: [idParam],
      get: {
        summary: 'One live session.',
        responses: {
          '200': { description: 'The session.', content: jsonContent(ref('Session')) },
          '400': badRequest,
          '401': unauthorized,
          '404': errorResponse('No live session has that id (QG_ERR_SESSION_NOT_FOUND).'),
          '503': fleetUnavailable,
        },
      },
      delete: {
        summary: 'Kill a session (end reason admin_kill); with config fleet on whichever gateway owns it.',
        responses: {
          '200': {
            description: 'Closed.',
            content: jsonContent({
              type: 'object',
              properties: {
                id: { type: 'string' },
                closed: { const: true },
                reason: { const: 'admin_kill' },
                gateway: { type: 'string', description: 'The gateway that ended it (config fleet only).' },
              },
            }),
          },
          '400': badRequest,
          '401': unauthorized,
          '404': errorResponse('No live session has that id (QG_ERR_SESSION_NOT_FOUND).'),
          '502': errorResponse('The owning gateway is not listening on its fleet channel (QG_ERR_FLEET_UNREACHABLE).'),
          '503': fleetUnavailable,
          '504': errorResponse('The owning gateway did not answer in time (QG_ERR_FLEET_TIMEOUT); the session may still end.'),
        },
      },
    },
    '/api/users/{name}': {
      parameters: [nameParam],
      get: {
        summary: 'A user: limit, live rate, sessions, usage, quota.',
        responses: {
          '200': { description: 'The user.', content: jsonContent(ref('User')) },
          '400': badRequest,
          '401': unauthorized,
          '404': errorResponse('No user has that name (QG_ERR_USER_NOT_FOUND).'),
        },
      },
      patch: {
        summary: "Change a user's bandwidth or enabled state: edits the users file in place (comments kept), then reloads.",
        requestBody: { required: true, content: jsonContent(ref('UserPatch')) },
        responses: {
          '200': { description: 'Written and applied (or nothing to change).', content: jsonContent(ref('UserUpdateResult')) },
          '400': badRequest,
          '401': unauthorized,
          '403': forbidden,
          '404': errorResponse('No user has that name (QG_ERR_USER_NOT_FOUND).'),
          '409': errorResponse('The users are not in a users file (QG_ERR_CONFIG_INVALID), or the reload refused the result (QG_ERR_RELOAD_FAILED).'),
        },
      },
    },
    '/api/users/{name}/sessions': {
      parameters: [nameParam],
      delete: {
        summary: "Kill all of a user's sessions (end reason admin_kill).",
        responses: {
          '200': {
            description: 'Number of sessions closed (0 when the user had none).',
            content: jsonContent({
              type: 'object',
              properties: { user: { type: 'string' }, sessionsClosed: { type: 'integer' }, reason: { const: 'admin_kill' } },
            }),
          },
          '400': badRequest,
          '401': unauthorized,
          '404': errorResponse('No user has that name (QG_ERR_USER_NOT_FOUND).'),
        },
      },
    },
    '/api/overview': {
      get: {
        summary: "Live sessions, every user with live rate against limit, and gateway health in one snapshot (the console's Now view).",
        responses: { '200': { description: 'Snapshot.', content: jsonContent(ref('Overview')) }, '401': unauthorized },
      },
    },
    '/api/fleet': {
      get: {
        summary: "This gateway's id, its Redis link and the state of its rate leases (enabled false: a gateway alone).",
        responses: { '200': { description: 'Fleet state.', content: jsonContent(ref('Fleet')) }, '401': unauthorized },
      },
    },
    '/api/history/hourly': {
      get: {
        summary: 'Sessions started and bytes per UTC hour over the window (every hour listed, zeros included).',
        parameters: [windowParam, gatewayParam],
        responses: { '200': { description: 'Series.', content: jsonContent(ref('HourlyHistory')) }, '400': badRequest, '401': unauthorized },
      },
    },
    '/api/history/sessions': {
      get: {
        summary: 'Past (and open) sessions from the history with their end reason, newest first; JSON or CSV.',
        parameters: [
          windowParam,
          gatewayParam,
          { name: 'q', in: 'query', required: false, description: 'Substring of user, id, tunnel address, peer, transport or end reason (case-insensitive).', schema: { type: 'string', maxLength: 200 } },
          { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: MAX_PAST_SESSIONS, default: DEFAULT_PAST_SESSIONS } },
          { name: 'format', in: 'query', required: false, schema: { type: 'string', enum: ['json', 'csv'], default: 'json' } },
        ],
        responses: {
          '200': {
            description: 'Sessions.',
            content: { ...jsonContent(ref('PastSessions')), 'text/csv': { schema: { type: 'string', description: 'One row per session, the PastSession fields as columns.' } } },
          },
          '400': badRequest,
          '401': unauthorized,
        },
      },
    },
    '/api/console/login': {
      post: {
        summary: 'Exchange the admin token for a console session cookie (HttpOnly, SameSite=Strict, Secure over TLS).',
        security: [{}],
        requestBody: { required: true, content: jsonContent(ref('ConsoleLogin')) },
        responses: {
          '200': { description: 'Logged in; Set-Cookie carries the session.', content: jsonContent(ref('ConsoleSession')) },
          '400': badRequest,
          '401': errorResponse('Wrong admin token (QG_ERR_ADMIN_UNAUTHORIZED).'),
          '403': errorResponse('Sent from another origin (QG_ERR_ADMIN_FORBIDDEN).'),
          '429': errorResponse('Too many wrong tokens from this source (QG_ERR_ADMIN_THROTTLED); Retry-After says when to try again.'),
        },
      },
    },
    '/api/console/logout': {
      post: {
        summary: 'End the console login: the cookie is refused from now on and deleted.',
        responses: {
          '200': { description: 'Logged out.', content: jsonContent({ type: 'object', properties: { loggedOut: { const: true } } }) },
          '401': unauthorized,
          '403': forbidden,
          '503': errorResponse('The logout could not be saved in the data directory (QG_ERR_ADMIN_UNAVAILABLE): refused until the gateway restarts.'),
        },
      },
    },
    '/api/console/session': {
      get: {
        summary: "The console login this cookie stands for: its CSRF token and expiry (a reloaded page reads it here).",
        responses: { '200': { description: 'The login.', content: jsonContent(ref('ConsoleSession')) }, '400': badRequest, '401': unauthorized },
      },
    },
    '/api/console/events': {
      get: {
        summary: 'Server-sent events: an `overview` event (the Overview schema) at once and every second; one shared snapshot for all open pages.',
        responses: {
          '200': { description: 'Event stream.', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          '401': unauthorized,
          '503': errorResponse('Too many open console pages (QG_ERR_ADMIN_UNAVAILABLE).'),
        },
      },
    },
    '/api/stats': {
      get: {
        summary: 'Totals over a window: active sessions, sessions and bytes, top users, rejections.',
        parameters: [windowParam, gatewayParam],
        responses: { '200': { description: 'Stats.', content: jsonContent(ref('Stats')) }, '400': badRequest, '401': unauthorized },
      },
    },
    '/api/reload': {
      post: {
        summary: 'Re-read the configuration and apply it; on failure the running config stays.',
        requestBody: { required: false, content: jsonContent({ type: 'object', additionalProperties: false }) },
        responses: {
          '200': { description: 'Applied.', content: jsonContent(ref('ReloadResult')) },
          '400': badRequest,
          '401': unauthorized,
          '409': errorResponse('The new configuration is invalid (QG_ERR_RELOAD_FAILED); the message says why.'),
          '413': errorResponse('Body larger than 16 KiB (QG_ERR_ADMIN_BAD_REQUEST).'),
          '500': errorResponse('Reload failed unexpectedly (QG_ERR_RELOAD_FAILED).'),
        },
      },
    },
  },
} as const;
