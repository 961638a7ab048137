/**
 * How a client presents itself on quicgate's own QUIC transport: the first line of the control stream is a
 * connect request, `{"type":"connect","user":...,"password":...,"previousAddresses":[...],"clientVersion":...,
 * "resume":{"sessionId","secret"}|null}` (the fields of wt-auth.ts Credentials, validated by the same schema),
 * sent right after the TLS handshake; the gateway answers with the assignment on the same stream, or closes
 * the connection with REFUSAL_CLOSE_CODE and the refusal as JSON in the reason (wt-auth.ts encodeRefusal).
 * TLS protects the line; it is never logged.
 */
import { z } from 'zod';
import { MAX_CONTROL_MESSAGE_BYTES } from './control.js';
import { BAD_CREDENTIALS, connectRequest, CredentialsSchema, type Credentials, type ParsedConnect } from './wt-auth.js';

const ConnectLineSchema = CredentialsSchema.extend({ type: z.literal('connect') });

export function encodeConnectLine(credentials: Credentials): string {
  return `${JSON.stringify({ type: 'connect', ...credentials })}\n`;
}

/** Reads the connect line (without its newline); never throws. */
export function parseConnectLine(line: string, peer: string): ParsedConnect {
  if (line.length > MAX_CONTROL_MESSAGE_BYTES) return { ok: false, status: 400, code: 'QG_ERR_PROTOCOL', message: 'connect request too long' };
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { ok: false, status: 400, code: 'QG_ERR_PROTOCOL', message: 'malformed request' };
  }
  if (typeof raw !== 'object' || raw === null || (raw as { type?: unknown }).type !== 'connect') {
    return { ok: false, status: 400, code: 'QG_ERR_PROTOCOL', message: 'malformed request' };
  }
  const parsed = ConnectLineSchema.safeParse(raw);
  if (!parsed.success) return BAD_CREDENTIALS;
  return { ok: true, request: connectRequest(parsed.data, peer, 'quic') };
}
