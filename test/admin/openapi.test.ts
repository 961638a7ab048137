import { AdminAuthThrottle } from '../../src/admin/auth-throttle.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsoleFeed } from '../../src/admin/console-feed.js';
import { consoleRoutes } from '../../src/admin/console-routes.js';
import { ConsoleSessions } from '../../src/admin/console-session.js';
import { adminRoutes } from '../../src/admin/routes.js';
import { systemClock } from '../../src/clock.js';
import { startAdminServer, type AdminServer } from '../../src/admin/server.js';
import { silentLogger } from '../../src/log.js';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import { FakeAdminBackend } from '../support/fake-admin-backend.js';

const TOKEN = 'openapi-test-token-0123456789';

interface Operation {
  responses: Record<string, unknown>;
  parameters?: { name: string; in: string }[];
  security?: unknown[];
}
type PathItem = Record<string, Operation | { name: string; in: string }[]>;
interface OpenApiDoc {
  openapi: string;
  paths: Record<string, PathItem>;
  components: { schemas: Record<string, unknown> };
}

const backend = new FakeAdminBackend();
const metrics = new MetricsExporter(backend, { defaultMetrics: false });
const routes = [
  ...adminRoutes({ backend, metrics, logger: silentLogger() }),
  ...consoleRoutes({
    adminToken: TOKEN,
    sessions: new ConsoleSessions({ adminToken: TOKEN }),
    throttle: new AdminAuthThrottle({ perSourcePerMinute: 10, clock: systemClock, logger: silentLogger() }),
    feed: new ConsoleFeed({ backend, clock: systemClock, logger: silentLogger() }),
    logger: silentLogger(),
  }),
];
let server: AdminServer;
let doc: OpenApiDoc;

beforeAll(async () => {
  const started = await startAdminServer({
    config: { enabled: true, listen: '127.0.0.1', port: 0, token: TOKEN },
    backend,
    metrics,
    logger: silentLogger(),
  });
  if (started === null) throw new Error('admin server did not start');
  server = started;
  const res = await fetch(`http://127.0.0.1:${server.port}/api/openapi.json`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  doc = (await res.json()) as OpenApiDoc;
});

afterAll(async () => {
  await server.close();
  metrics.close();
});

const openApiPath = (pattern: string): string => pattern.replace(/:([A-Za-z_]+)/g, '{$1}');
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

describe('GET /api/openapi.json', () => {
  it('is OpenAPI 3 and lists every route of the server', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    for (const route of routes) {
      const item = doc.paths[openApiPath(route.path)];
      expect(item, route.path).toBeDefined();
      expect(item?.[route.method.toLowerCase()], `${route.method} ${route.path}`).toBeDefined();
    }
  });

  it('lists no operation the server does not have', () => {
    const served = new Set(routes.map((r) => `${r.method} ${openApiPath(r.path)}`));
    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((k) => METHODS.includes(k))
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).toEqual([...served].sort());
  });

  it('declares every path parameter and resolves every schema reference', () => {
    for (const [path, item] of Object.entries(doc.paths)) {
      const names = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      const declared = (Array.isArray(item.parameters) ? item.parameters : []).filter((p) => p.in === 'path').map((p) => p.name);
      expect(declared.sort(), path).toEqual(names.sort());
    }
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1] ?? '');
    expect(refs.length).toBeGreaterThan(0);
    for (const name of refs) expect(doc.components.schemas[name], name).toBeDefined();
  });

  it('documents 401 on every route that needs a credential', () => {
    for (const route of routes) {
      const op = doc.paths[openApiPath(route.path)]?.[route.method.toLowerCase()] as Operation;
      expect(Object.keys(op.responses), `${route.method} ${route.path}`).toContain('401');
      if (route.auth === 'public') {
        expect(op.security).toEqual([{}]);
        continue;
      }
      if (route.auth === 'optional') expect(op.security).toContainEqual({});
    }
  });
});
