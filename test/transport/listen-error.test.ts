import dgram from 'node:dgram';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { isQuicgateError } from '../../src/errors.js';
import { listenError } from '../../src/transport/listen-error.js';

/** The error a real second bind on a port in use gives (loopback, nothing is sent). */
async function tcpBindConflict(): Promise<{ port: number; err: unknown }> {
  const first = net.createServer();
  await new Promise<void>((resolve) => first.listen(0, '127.0.0.1', resolve));
  const port = (first.address() as net.AddressInfo).port;
  const second = net.createServer();
  try {
    const err = await new Promise<unknown>((resolve) => {
      second.once('error', resolve);
      second.listen(port, '127.0.0.1', () => resolve(null));
    });
    return { port, err };
  } finally {
    second.close();
    await new Promise<void>((resolve) => first.close(() => resolve()));
  }
}

async function udpBindConflict(): Promise<{ port: number; err: unknown }> {
  const first = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => first.bind(0, '127.0.0.1', resolve));
  const port = first.address().port;
  const second = dgram.createSocket('udp4');
  try {
    const err = await new Promise<unknown>((resolve) => {
      second.once('error', resolve);
      second.bind(port, '127.0.0.1', () => resolve(null));
    });
    return { port, err };
  } finally {
    second.close();
    first.close();
  }
}

describe('listenError', () => {
  it('names the service, address, port, protocol and the cause of a TCP port in use', async () => {
    const { port, err } = await tcpBindConflict();
    expect((err as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
    const e = listenError('gateway (HTTP/2)', 'TCP', '127.0.0.1', port, err);
    expect(isQuicgateError(e, 'QG_ERR_LISTEN')).toBe(true);
    expect(e.message).toBe(
      `gateway (HTTP/2) cannot listen on 127.0.0.1:${port} (TCP): the address and port are already in use (another gateway or program listens there) (EADDRINUSE)`,
    );
    expect(e.details).toEqual({ service: 'gateway (HTTP/2)', address: '127.0.0.1', port, protocol: 'TCP', cause: 'EADDRINUSE' });
    expect(e.cause).toBe(err);
  });

  it('says the same for a UDP port in use', async () => {
    const { port, err } = await udpBindConflict();
    const e = listenError('gateway (QUIC)', 'UDP', '127.0.0.1', port, err);
    expect(e.message).toContain(`cannot listen on 127.0.0.1:${port} (UDP): the address and port are already in use`);
    expect(e.details).toMatchObject({ protocol: 'UDP', cause: 'EADDRINUSE' });
  });

  it('puts an IPv6 address in brackets and words the other known causes', () => {
    const denied = Object.assign(new Error('listen EACCES'), { code: 'EACCES' });
    expect(listenError('admin API', 'TCP', '2001:db8::1', 80, denied).message).toBe(
      'admin API cannot listen on [2001:db8::1]:80 (TCP): permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE) (EACCES)',
    );
    const absent = Object.assign(new Error('bind EADDRNOTAVAIL'), { code: 'EADDRNOTAVAIL' });
    expect(listenError('admin API', 'TCP', '192.0.2.9', 8080, absent).message).toContain('no local interface has this address (EADDRNOTAVAIL)');
  });

  it('falls back to the error message for an unknown code, and to the value for a non-error, with cause "unknown"', () => {
    const odd = Object.assign(new Error('something else'), { code: 'EWEIRD' });
    expect(listenError('gateway', 'UDP', '0.0.0.0', 443, odd).message).toBe('gateway cannot listen on 0.0.0.0:443 (UDP): something else (EWEIRD)');
    const thrown = listenError('gateway', 'TCP', '0.0.0.0', 443, 'boom');
    expect(thrown.message).toBe('gateway cannot listen on 0.0.0.0:443 (TCP): boom');
    expect(thrown.details).toMatchObject({ cause: 'unknown' });
  });
});
