/**
 * The console's calls to the admin API, all same-origin with the session cookie. Every POST, PATCH and DELETE
 * carries the login's CSRF token (the cookie alone is refused). The admin token is sent exactly once, in the
 * body of the login POST, and is never stored by the page.
 */
import type { ConsoleSessionInfo } from './types.js';

let csrfToken: string | null = null;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Set by the app: what to do when the login is gone (expired, logged out elsewhere, token changed). */
let onLoggedOut: () => void = () => undefined;
export function whenLoggedOut(fn: () => void): void {
  onLoggedOut = fn;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken !== null) headers['X-CSRF-Token'] = csrfToken;
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
  if (!res.ok) {
    const error = json?.error;
    if (res.status === 401 && path !== '/api/console/login') {
      csrfToken = null;
      onLoggedOut();
    }
    throw new ApiError(res.status, error?.code ?? 'HTTP_' + res.status, error?.message ?? `${res.status} ${res.statusText}`);
  }
  return json as T;
}

export const api = {
  get: <T>(path: string): Promise<T> => call<T>('GET', path),
  post: <T>(path: string, body?: unknown): Promise<T> => call<T>('POST', path, body ?? {}),
  patch: <T>(path: string, body: unknown): Promise<T> => call<T>('PATCH', path, body),
  delete: <T>(path: string): Promise<T> => call<T>('DELETE', path),
};

export async function login(token: string): Promise<void> {
  const session = await call<ConsoleSessionInfo>('POST', '/api/console/login', { token });
  csrfToken = session.csrfToken;
}

/** Is there a login (the cookie is HttpOnly, so ask)? Null when the gateway cannot be reached (restarting). */
export async function resumeLogin(): Promise<boolean | null> {
  try {
    const session = await call<ConsoleSessionInfo>('GET', '/api/console/session');
    csrfToken = session.csrfToken;
    return true;
  } catch (err) {
    return err instanceof ApiError && err.status === 401 ? false : null;
  }
}

export async function logout(): Promise<void> {
  await call('POST', '/api/console/logout', {}).catch(() => undefined);
  csrfToken = null;
}

export const enc = encodeURIComponent;
