/**
 * OpenAPI 3.1 description of the admin API, served at GET /api/openapi.json. Written by hand as a static
 * object so it reads like documentation; test/admin/openapi.test.ts checks it lists exactly the routes in
 * routes.ts. Field names are those of the views in backend.ts.
 */
import { DEFAULT_WINDOW_HOURS, MAX_WINDOW_HOURS } from './validation.js';

const ref = (name: string): { $ref: string } => ({ $ref: `#/components/schemas/${name}` });
const jsonContent = (schema: object): object => ({ 'application/json': { schema } });
const errorResponse = (description: string): object => ({ description, content: jsonContent(ref('Error')) });

const unauthorized = errorResponse('Missing or wrong bearer token (QG_ERR_ADMIN_UNAUTHORIZED).');
const badRequest = errorResponse('Invalid parameter, query or body (QG_ERR_ADMIN_BAD_REQUEST); details.parameter names it.');

const idParam = {
  name: 'id',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
};
const nameParam = {
  name: 'name',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$' },
};

const counts = (description: string): object => ({ type: 'object', description, additionalProperties: { type: 'integer' } });

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'quicgate admin API',
    version: '1',
    description:
      'Operator API of the quicgate VPN gateway. Every route needs `Authorization: Bearer <token>` except ' +
      'GET /healthz, which answers without a token with the status only. Errors are ' +
      '`{ "error": { "code": "QG_ERR_...", "message": "...", "details": {...} } }`.',
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: {
              code: {
                type: 'string',
                enum: [
                  'QG_ERR_ADMIN_UNAUTHORIZED',
                  'QG_ERR_ADMIN_BAD_REQUEST',
                  'QG_ERR_ADMIN_NOT_FOUND',
                  'QG_ERR_SESSION_NOT_FOUND',
                  'QG_ERR_USER_NOT_FOUND',
                  'QG_ERR_RELOAD_FAILED',
                  'QG_ERR_ADMIN_INTERNAL',
                ],
              },
              message: { type: 'string' },
              details: { type: 'object', additionalProperties: true },
            },
          },
        },
      },
      Session: {
        type: 'object',
        required: ['id', 'user', 'ipv4', 'ipv6', 'peer', 'transport', 'startedAt', 'lastActivityAt', 'bytesIn', 'bytesOut', 'packetsIn', 'packetsOut', 'rateIn', 'rateOut'],
        properties: {
          id: { type: 'string' },
          user: { type: 'string' },
          ipv4: { type: ['string', 'null'], description: 'Tunnel IPv4 address.' },
          ipv6: { type: ['string', 'null'], description: 'Tunnel IPv6 address.' },
          peer: { type: 'string', description: 'Client address as "ip:port".' },
          transport: { type: 'string', enum: ['h3', 'h2', 'memory'] },
          startedAt: { type: 'string', format: 'date-time' },
          lastActivityAt: { type: 'string', format: 'date-time' },
          bytesIn: { type: 'integer', description: 'Client to gateway.' },
          bytesOut: { type: 'integer', description: 'Gateway to client.' },
          packetsIn: { type: 'integer' },
          packetsOut: { type: 'integer' },
          rateIn: { type: 'number', description: 'Bytes per second over the last few seconds.' },
          rateOut: { type: 'number' },
        },
      },
      Quota: {
        type: 'object',
        properties: {
          bytes: { type: 'integer' },
          period: { type: 'string', enum: ['day', 'month'] },
          periodKey: { type: 'string' },
          used: { type: 'integer' },
          remaining: { type: 'integer' },
          action: { type: 'string', enum: ['disconnect', 'throttle'] },
          exceeded: { type: 'boolean' },
        },
      },
      User: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          disabled: { type: 'boolean' },
          bandwidth: { type: ['integer', 'null'], description: 'Limit in bytes per second; null = unlimited.' },
          burst: { type: ['integer', 'null'] },
          rateIn: { type: 'number' },
          rateOut: { type: 'number' },
          maxSessions: { type: 'integer' },
          sessions: { type: 'array', items: ref('Session') },
          usage: {
            type: 'object',
            properties: { sessions: { type: 'integer' }, bytesIn: { type: 'integer' }, bytesOut: { type: 'integer' } },
          },
          quota: { oneOf: [ref('Quota'), { type: 'null' }] },
        },
      },
      Stats: {
        type: 'object',
        properties: {
          windowHours: { type: 'integer' },
          activeSessions: { type: 'integer' },
          activeUsers: { type: 'integer' },
          sessionsInWindow: { type: 'integer' },
          bytesInWindow: { type: 'object', properties: { in: { type: 'integer' }, out: { type: 'integer' } } },
          topUsers: {
            type: 'array',
            items: { type: 'object', properties: { user: { type: 'string' }, bytes: { type: 'integer' } } },
          },
          rejections: counts('Refused session requests in the window, by reason.'),
        },
      },
      Health: {
        type: 'object',
        required: ['status'],
        properties: {
          status: { type: 'string', enum: ['ok', 'degraded'] },
          uptimeSeconds: { type: 'number', description: 'Only with a valid token.' },
          checks: {
            type: 'object',
            description: 'Only with a valid token.',
            properties: {
              tun: { type: 'string', enum: ['ok', 'down'] },
              listener: { type: 'string', enum: ['ok', 'down'] },
              history: { type: 'string', enum: ['ok', 'degraded', 'disabled'] },
              historyError: { type: ['string', 'null'] },
            },
          },
        },
      },
      ReloadResult: {
        type: 'object',
        properties: {
          bandwidthChanged: { type: 'array', items: { type: 'string' } },
          usersRemoved: { type: 'array', items: { type: 'string' } },
          sessionsClosed: { type: 'integer' },
          needRestart: { type: 'array', items: { type: 'string' }, description: 'settings that apply only after a restart' },
          changed: {
            type: 'array',
            description: 'every setting that differs from the running config, with how it took effect',
            items: {
              type: 'object',
              properties: {
                key: { type: 'string', description: 'the key in the config file, e.g. shaping_delay' },
                effect: { type: 'string', enum: ['live', 'new_sessions', 'restart'] },
              },
              required: ['key', 'effect'],
            },
          },
        },
      },
    },
  },
  security: [{ bearer: [] }],
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
        summary: 'List live sessions.',
        responses: {
          '200': {
            description: 'Live sessions.',
            content: jsonContent({ type: 'object', properties: { sessions: { type: 'array', items: ref('Session') } } }),
          },
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
        },
      },
      delete: {
        summary: 'Kill a session (end reason admin_kill).',
        responses: {
          '200': {
            description: 'Closed.',
            content: jsonContent({
              type: 'object',
              properties: { id: { type: 'string' }, closed: { const: true }, reason: { const: 'admin_kill' } },
            }),
          },
          '400': badRequest,
          '401': unauthorized,
          '404': errorResponse('No live session has that id (QG_ERR_SESSION_NOT_FOUND).'),
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
    '/api/stats': {
      get: {
        summary: 'Totals over a window: active sessions, sessions and bytes, top users, rejections.',
        parameters: [
          {
            name: 'window_hours',
            in: 'query',
            required: false,
            schema: { type: 'integer', minimum: 1, maximum: MAX_WINDOW_HOURS, default: DEFAULT_WINDOW_HOURS },
          },
        ],
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
