/**
 * How a client presents itself when it opens the WebTransport session, both ends of it.
 * HTTP/2: request headers `authorization: Basic`, `x-quicgate-previous`, `x-quicgate-version`,
 * `x-quicgate-resume: <session id>.<secret>` (reconnect only; sent through
 * the patched client option `headers`). HTTP/3: the native client cannot add headers, so the same fields go
 * in the query `?qg=<base64url JSON>` of the CONNECT path (TLS protects both; neither is logged).
 * A refusal carries its code and message in `x-quicgate-error` / `x-quicgate-message` response headers
 * (HTTP/2; on HTTP/3 only the status arrives).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import type { ConnectRequest, ResumeClaim } from './types.js';
import type { WtRequestEvent } from './wt-lib.js';

export const TUNNEL_PATH = '/quicgate';
export const ERROR_HEADER = 'x-quicgate-error';
export const MESSAGE_HEADER = 'x-quicgate-message';
const PREVIOUS_HEADER = 'x-quicgate-previous';
const VERSION_HEADER = 'x-quicgate-version';
const RESUME_HEADER = 'x-quicgate-resume';
const QUERY_PARAM = 'qg';
/** How long the server waits for the client's control stream after accepting the session. */
export const CONTROL_STREAM_TIMEOUT_MS = 10_000;

export interface Credentials {
  readonly user: string;
  readonly password: string;
  readonly previousAddresses: readonly string[];
  readonly clientVersion: string;
  readonly resume: ResumeClaim | null;
}

const ResumeSchema = z.object({
  sessionId: z.string().min(1).max(64),
  secret: z.string().min(1).max(128),
});

const CredentialsSchema = z.object({
  user: z.string().min(1).max(128),
  password: z.string().max(1024),
  previousAddresses: z.array(z.string().max(64).refine((a) => isIP(a) !== 0, 'not an IP address')).max(4),
  clientVersion: z.string().max(64),
  resume: ResumeSchema.nullable(),
});

export function credentialHeaders(credentials: Credentials): Record<string, string> {
  const basic = Buffer.from(`${credentials.user}:${credentials.password}`, 'utf8').toString('base64');
  const headers: Record<string, string> = { authorization: `Basic ${basic}`, [VERSION_HEADER]: credentials.clientVersion };
  if (credentials.previousAddresses.length > 0) headers[PREVIOUS_HEADER] = credentials.previousAddresses.join(',');
  if (credentials.resume !== null) headers[RESUME_HEADER] = `${credentials.resume.sessionId}.${credentials.resume.secret}`;
  return headers;
}

export function credentialPath(credentials: Credentials): string {
  const r = credentials.resume === null ? undefined : `${credentials.resume.sessionId}.${credentials.resume.secret}`;
  const json = JSON.stringify({ u: credentials.user, p: credentials.password, a: credentials.previousAddresses, v: credentials.clientVersion, r });
  return `${TUNNEL_PATH}?${QUERY_PARAM}=${Buffer.from(json, 'utf8').toString('base64url')}`;
}

export type ParsedConnect =
  | { readonly ok: true; readonly request: ConnectRequest }
  | { readonly ok: false; readonly status: 401 | 404; readonly code: string; readonly message: string };

/** Read the credentials of a CONNECT request; never throws. */
export function parseConnectRequest(event: WtRequestEvent, transport: 'h2' | 'h3'): ParsedConnect {
  const peer = event.peerAddress ?? 'unknown';
  const rawPath = single(event.header[':path']) ?? '';
  const url = new URL(rawPath, 'https://gateway.invalid');
  if (url.pathname !== TUNNEL_PATH) return { ok: false, status: 404, code: 'QG_ERR_PROTOCOL', message: 'unknown path' };
  const raw = fromHeaders(event.header) ?? fromQuery(url.searchParams.get(QUERY_PARAM));
  const parsed = CredentialsSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, status: 401, code: 'QG_ERR_AUTH_FAILED', message: 'missing or malformed credentials' };
  return {
    ok: true,
    request: {
      user: parsed.data.user,
      password: parsed.data.password,
      sourceAddress: sourceOf(peer),
      peer,
      previousAddresses: parsed.data.previousAddresses,
      clientVersion: parsed.data.clientVersion,
      resume: parsed.data.resume,
      transport,
    },
  };
}

function fromHeaders(header: WtRequestEvent['header']): unknown {
  const authorization = single(header.authorization);
  if (authorization === undefined) return undefined;
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(authorization.trim());
  if (!match) return { user: '' };
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return { user: '' };
  const previous = single(header[PREVIOUS_HEADER]);
  return {
    user: decoded.slice(0, colon),
    password: decoded.slice(colon + 1),
    previousAddresses: previous ? previous.split(',').map((a) => a.trim()).filter((a) => a !== '') : [],
    clientVersion: single(header[VERSION_HEADER]) ?? '',
    resume: resumeClaim(single(header[RESUME_HEADER])),
  };
}

function fromQuery(value: string | null): unknown {
  if (value === null) return undefined;
  try {
    const raw = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as { u?: unknown; p?: unknown; a?: unknown; v?: unknown; r?: unknown };
    return { user: raw.u, password: raw.p, previousAddresses: raw.a ?? [], clientVersion: raw.v ?? '', resume: typeof raw.r === 'string' ? resumeClaim(raw.r) : raw.r === undefined ? null : raw.r };
  } catch {
    return undefined;
  }
}

/** "<session id>.<secret>" -> claim; absent -> null; anything else -> a value the schema refuses. */
function resumeClaim(text: string | undefined): { sessionId: string; secret: string } | null | 'malformed' {
  if (text === undefined) return null;
  const dot = text.lastIndexOf('.');
  return dot <= 0 ? 'malformed' : { sessionId: text.slice(0, dot), secret: text.slice(dot + 1) };
}

function single(value: string | readonly string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : value?.[0];
}

/** "198.51.100.7:4433" -> "198.51.100.7"; "[2001:db8::1]:4433" or "2001:db8::1:4433" -> "2001:db8::1". */
export function sourceOf(peer: string): string {
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(peer);
  if (bracketed) return bracketed[1]!;
  const colon = peer.lastIndexOf(':');
  const address = colon > 0 ? peer.slice(0, colon) : peer;
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
