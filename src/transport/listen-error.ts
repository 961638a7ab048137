/**
 * The error of a socket that cannot bind: which service, address, port and protocol, and the cause in words
 * (the errno code stays in `details.cause`), so that "a second gateway on a port in use" says exactly that.
 */
import { QuicgateError } from '../errors.js';

const CAUSES: Readonly<Record<string, string>> = {
  EADDRINUSE: 'the address and port are already in use (another gateway or program listens there)',
  EACCES: 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'no local interface has this address',
  EAFNOSUPPORT: 'this address family is not supported here',
};

export function listenError(service: string, protocol: 'TCP' | 'UDP', host: string, port: number, err: unknown): QuicgateError {
  const code = typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : undefined;
  const cause = (code !== undefined ? CAUSES[code] : undefined) ?? (err instanceof Error ? err.message : String(err));
  const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return new QuicgateError('QG_ERR_LISTEN', `${service} cannot listen on ${where} (${protocol}): ${cause}${code !== undefined ? ` (${code})` : ''}`, {
    cause: err,
    details: { service, address: host, port, protocol, cause: code ?? 'unknown' },
  });
}
