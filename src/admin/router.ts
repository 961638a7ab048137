/**
 * Matches a request path against the route table: exact segments and ":name" parameters, nothing fancier.
 * Tells "no such path" (404) apart from "path exists, other method" (405 with Allow).
 */
import type { HttpMethod, Route } from './routes.js';
import { AdminHttpError } from './http-error.js';
import { badRequest } from './validation.js';

export type RouteMatch =
  | { readonly kind: 'found'; readonly route: Route; readonly params: Record<string, string> }
  | { readonly kind: 'wrong_method'; readonly allowed: readonly HttpMethod[] }
  | { readonly kind: 'not_found' };

export function matchRoute(routes: readonly Route[], method: string, pathname: string): RouteMatch {
  const segments = pathname.split('/');
  const allowed: HttpMethod[] = [];
  for (const route of routes) {
    const params = matchPath(route.path, segments);
    if (params === null) continue;
    if (route.method === method) return { kind: 'found', route, params };
    allowed.push(route.method);
  }
  return allowed.length > 0 ? { kind: 'wrong_method', allowed } : { kind: 'not_found' };
}

function matchPath(pattern: string, segments: readonly string[]): Record<string, string> | null {
  const parts = pattern.split('/');
  if (parts.length !== segments.length) return null;
  const raw: [string, string][] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? '';
    const segment = segments[i] ?? '';
    if (part.startsWith(':')) {
      if (segment === '') return null;
      raw.push([part.slice(1), segment]);
    } else if (part !== segment) {
      return null;
    }
  }
  // Decoded only once the whole path matched, so a bad escape on an unknown path is still a 404.
  return Object.fromEntries(raw.map(([name, segment]) => [name, decodeSegment(segment, name)]));
}

function decodeSegment(segment: string, name: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest(name, 'bad percent-encoding');
  }
}

export function routeNotFound(method: string, pathname: string): AdminHttpError {
  return new AdminHttpError(404, 'QG_ERR_ADMIN_NOT_FOUND', `no route ${method} ${pathname} (see GET /api/openapi.json)`);
}

export function methodNotAllowed(method: string, pathname: string, allowed: readonly HttpMethod[]): AdminHttpError {
  return new AdminHttpError(405, 'QG_ERR_ADMIN_NOT_FOUND', `method ${method} not allowed on ${pathname}; allowed: ${allowed.join(', ')}`, {
    details: { allowed: [...allowed] },
    headers: { Allow: allowed.join(', ') },
  });
}
