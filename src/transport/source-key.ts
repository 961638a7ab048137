/**
 * The key by which limits count a source address: an IPv4 address as is (also when IPv4-mapped), an IPv6
 * address by its /64, since one client usually owns a whole /64 and could otherwise rotate addresses inside it.
 * Shared by the authentication throttle (src/gateway/admission.ts) and the connection guard.
 */
import { Address6 } from 'ip-address';

const IPV4_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

export function sourceKey(address: string): string {
  const mapped = IPV4_MAPPED.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  try {
    return `${new Address6(`${address.replace(/%.*$/, '')}/64`).startAddress().correctForm()}/64`;
  } catch {
    return address;
  }
}
