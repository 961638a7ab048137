/**
 * The tunnel MTU of one session, derived from the datagram size of its transport: a packet of the MTU must
 * travel as ONE whole-packet record in ONE datagram (framing.ts), never split into fragments, as long as the
 * IP version allows. HTTP/2 datagrams (16,000 bytes) carry any configured MTU; HTTP/3 datagrams are as large
 * as the QUIC stack's packet size allows (1211 bytes at the client, 1213 at the gateway with the library's
 * QUICHE default packet size of 1250 bytes, which its JS API cannot raise), so an HTTP/3 session gets a lower MTU.
 *
 * IPv6 needs a link MTU of at least 1280 (RFC 8200; Linux removes IPv6 from a device below it). A session
 * with IPv6 whose datagrams cannot carry 1280 gets 1280: its packets over the datagram size travel as two
 * fragments of the framing (reassembled in order, a lost fragment loses that packet, like IP fragmentation).
 * docs/operations.md ("Tunnel MTU") has the measurement behind this.
 */
import { RECORD_HEADER_BYTES } from './framing.js';

export const IPV6_MIN_MTU = 1280;
export const IPV4_MIN_MTU = 576;

/** The largest IP packet that fits one datagram of `datagramBytes` whole. */
export function packetBytesFor(datagramBytes: number): number {
  return datagramBytes - RECORD_HEADER_BYTES;
}

/** The MTU of a session: the configured MTU, lowered to what one datagram carries, floored by the IP minimum. */
export function sessionMtu(configuredMtu: number, datagramBytes: number, carriesIpv6: boolean): number {
  const floor = carriesIpv6 ? IPV6_MIN_MTU : IPV4_MIN_MTU;
  return Math.max(floor, Math.min(configuredMtu, packetBytesFor(datagramBytes)));
}
