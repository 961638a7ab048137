/**
 * How a client presents itself when it opens the WebTransport session, both ends of it.
 * HTTP/2: request headers `authorization: Basic`, `x-quicgate-previous`, `x-quicgate-version`,
 * `x-quicgate-resume: <session id>.<secret>` (reconnect only; sent through
 * the patched client option `headers`). HTTP/3: the native client cannot add headers, so the same fields go
 * in the query `?qg=<base64url JSON>` of the CONNECT path (TLS protects both; neither is logged).
 * A refusal carries its code and message in `x-quicgate-error` / `x-quicgate-message` response headers on
 * HTTP/2. On HTTP/3 the library's native client receives no status or headers of a refused CONNECT (it sees
 * only "Opening handshake failed", like a network failure), so the gateway accepts the CONNECT and closes the
 * session at once with REFUSAL_CLOSE_CODE and the refusal as JSON in the close reason (encodeRefusal); no
 * session state exists for it. Both ends apply the same retry rule (refusalRetries).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { QuicgateError } from '../errors.js';
import type { ConnectRequest, Refusal, ResumeClaim } from './types.js';
import type { WtRequestEvent } from './wt-lib.js';

export const TUNNEL_PATH = '/quicgate';
export const ERROR_HEADER = 'x-quicgate-error';
export const MESSAGE_HEADER = 'x-quicgate-message';
const PREVIOUS_HEADER = 'x-quicgate-previous';
const VERSION_HEADER = 'x-quicgate-version';
const RESUME_HEADER = 'x-quicgate-resume';
const QUERY_PARAM = 'qg';
/** WebTransport application close code of an HTTP/3 refusal ("QG" 0x5147, then 0x0001). */
export const REFUSAL_CLOSE_CODE = 0x5147_0001;
/** WebTransport limits a close reason to 1024 bytes; the message is cut well below that. */
const MAX_REFUSAL_MESSAGE = 512;

const RefusalSchema = z.object({
  refused: z.number().int().min(400).max(599),
  code: z.string().min(1).max(64),
  message: z.string().max(MAX_REFUSAL_MESSAGE),
});

/** The close reason of an HTTP/3 refusal. */
export function encodeRefusal(refusal: Refusal): string {
  return JSON.stringify({ refused: refusal.status, code: refusal.code, message: refusal.message.slice(0, MAX_REFUSAL_MESSAGE) });
}

/** The refusal in a session close, or undefined when the close is not one; never throws. */
export function decodeRefusal(closeCode: number | undefined, reason: string): Refusal | undefined {
  if (closeCode !== REFUSAL_CLOSE_CODE) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(reason);
  } catch {
    return undefined;
  }
  const parsed = RefusalSchema.safeParse(raw);
  return parsed.success ? { status: parsed.data.refused, code: parsed.data.code, message: parsed.data.message } : undefined;
}

/** Whether a client should try again after a refusal: not after bad credentials, a ban or a wrong path. */
export function refusalRetries(status: number): boolean {
  return status !== 401 && status !== 403 && status !== 404;
}

/** A refusal as the client's error: QG_ERR_REJECTED with status, code, message, retry and transport in its details. */
export function rejectedError(refusal: Refusal, transport: string, cause?: unknown): QuicgateError {
  const { status, code, message } = refusal;
  return new QuicgateError('QG_ERR_REJECTED', `gateway refused the session (${status} ${code})${message ? `: ${message}` : ''}`, {
    ...(cause === undefined ? {} : { cause }),
    details: { status, reason: code, message, retry: refusalRetries(status), transport },
  });
}

/** Longer paths are refused unread (credentials in the query are a few hundred characters). */
const MAX_PATH_CHARS = 8192;
/** The characters RFC 3986 allows in a path and query (no "\\", "[", spaces, controls). */
const URI_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%?#]*$/;
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

export const CredentialsSchema = z.object({
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
  | { readonly ok: false; readonly status: 400 | 401 | 404; readonly code: string; readonly message: string };

/** Credentials that fail their schema: refused as a failed login, whatever the transport. */
export const BAD_CREDENTIALS: ParsedConnect = { ok: false, status: 401, code: 'QG_ERR_AUTH_FAILED', message: 'missing or malformed credentials' };

/** The request the gateway admits, from validated credentials and the peer they came from (every transport). */
export function connectRequest(credentials: Credentials, peer: string, transport: ConnectRequest['transport']): ConnectRequest {
  return {
    user: credentials.user,
    password: credentials.password,
    sourceAddress: sourceOf(peer),
    peer,
    previousAddresses: credentials.previousAddresses,
    clientVersion: credentials.clientVersion,
    resume: credentials.resume,
    transport,
  };
}

const MALFORMED: ParsedConnect = { ok: false, status: 400, code: 'QG_ERR_PROTOCOL', message: 'malformed request' };

/** Read the credentials of a CONNECT request; never throws (anything unexpected is a 400). */
export function parseConnectRequest(event: WtRequestEvent, transport: 'h2' | 'h3'): ParsedConnect {
  try {
    return parse(event, transport);
  } catch {
    return MALFORMED;
  }
}

function parse(event: WtRequestEvent, transport: 'h2' | 'h3'): ParsedConnect {
  const peer = event.peerAddress ?? 'unknown';
  const rawPath = single(event.header[':path']) ?? '';
  // Split by hand: `new URL(path, base)` throws on a :path such as "//[" (read as an authority).
  if (!rawPath.startsWith('/') || rawPath.length > MAX_PATH_CHARS || !URI_CHARS.test(rawPath)) return MALFORMED;
  const cut = rawPath.search(/[?#]/);
  const pathname = cut < 0 ? rawPath : rawPath.slice(0, cut);
  if (pathname !== TUNNEL_PATH) return { ok: false, status: 404, code: 'QG_ERR_PROTOCOL', message: 'unknown path' };
  const query = cut < 0 || rawPath[cut] === '#' ? '' : rawPath.slice(cut + 1).split('#', 1)[0]!;
  const raw = fromHeaders(event.header) ?? fromQuery(new URLSearchParams(query).get(QUERY_PARAM));
  const parsed = CredentialsSchema.safeParse(raw);
  if (!parsed.success) return BAD_CREDENTIALS;
  return { ok: true, request: connectRequest(parsed.data, peer, transport) };
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
