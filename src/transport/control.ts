/**
 * Control messages on the tunnel's control stream: newline-delimited JSON, validated with zod on receipt.
 * A message that does not parse or validate is dropped and counted (QG_ERR_CONTROL_MALFORMED), never thrown
 * into the caller.
 */
import { z } from 'zod';

/** Longest accepted control line in bytes; longer input is malformed. */
export const MAX_CONTROL_MESSAGE_BYTES = 16 * 1024;

const address = z.object({
  /** Client's tunnel address, e.g. "198.18.0.2" */
  address: z.string(),
  prefix: z.number().int().min(0).max(128),
  /** Gateway's address on the tunnel network. */
  gateway: z.string(),
});

export const AssignMessage = z.object({
  type: z.literal('assign'),
  sessionId: z.string(),
  ipv4: address.nullable(),
  ipv6: address.nullable(),
  mtu: z.number().int().min(576).max(65535),
  dns: z.array(z.string()),
  routes: z.array(z.string()),
  keepaliveMs: z.number().int().positive(),
  /**
   * Proof of ownership of this session: a reconnecting client sends it with the session id, and the gateway
   * ends this session (`resumed`) and gives the new one its addresses. A secret: never logged.
   */
  resumeSecret: z.string().min(1).max(128).optional(),
});

export const KeepaliveMessage = z.object({
  type: z.literal('keepalive'),
  /** Sender's timestamp (ms), echoed in the ack for RTT. */
  t: z.number(),
});

export const KeepaliveAckMessage = z.object({
  type: z.literal('keepalive_ack'),
  t: z.number(),
});

/**
 * Sent once by each side at connect: the highest datagram framing version it decodes (framing.ts). A peer
 * that never sends it speaks version 1. Consumed by the transport itself.
 */
export const FramingMessage = z.object({
  type: z.literal('framing'),
  version: z.number().int().min(1).max(255),
});

export const CloseMessage = z.object({
  type: z.literal('close'),
  reason: z.string().max(64),
  message: z.string().max(512).optional(),
  /**
   * Whether the client should reconnect: the gateway's decision, which the client follows alone (false e.g.
   * after admin_kill, replaced, user_removed, quota_exceeded).
   */
  retry: z.boolean(),
});

export const ControlMessageSchema = z.discriminatedUnion('type', [
  AssignMessage,
  KeepaliveMessage,
  KeepaliveAckMessage,
  CloseMessage,
  FramingMessage,
]);

export type ControlMessage = z.infer<typeof ControlMessageSchema>;
export type AssignControl = z.infer<typeof AssignMessage>;
export type CloseControl = z.infer<typeof CloseMessage>;

export type ParsedControl = { ok: true; message: ControlMessage } | { ok: false; error: string };

/** Parse one control line; never throws. */
export function parseControlLine(line: string): ParsedControl {
  if (line.length > MAX_CONTROL_MESSAGE_BYTES) return { ok: false, error: 'control message too long' };
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { ok: false, error: 'control message is not JSON' };
  }
  const result = ControlMessageSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    return { ok: false, error: `control message invalid at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}` };
  }
  return { ok: true, message: result.data };
}

export function encodeControl(message: ControlMessage): string {
  return `${JSON.stringify(message)}\n`;
}
