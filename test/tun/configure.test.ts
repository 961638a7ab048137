import { describe, expect, it } from 'vitest';
import { QuicgateError } from '../../src/errors.js';
import { addRoute, assertDeviceName, cidrFamily, configureTun, runIp } from '../../src/tun/configure.js';

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    return err instanceof QuicgateError ? err.code : `not a QuicgateError: ${String(err)}`;
  }
}

describe('cidrFamily', () => {
  it('tells IPv4 from IPv6 CIDRs', () => {
    expect(cidrFamily('198.18.0.1/24')).toBe(4);
    expect(cidrFamily('0.0.0.0/0')).toBe(4);
    expect(cidrFamily('2001:db8::1/64')).toBe(6);
    expect(cidrFamily('::/0')).toBe(6);
  });

  it.each(['198.18.0.1', '198.18.0.1/33', '2001:db8::/129', 'tun0/24', '198.18.0.1/', '198.18.0.1/2x', '/24'])(
    'rejects %s with QG_ERR_TUN_CONFIGURE',
    (cidr) => {
      expect(() => cidrFamily(cidr)).toThrow(expect.objectContaining({ code: 'QG_ERR_TUN_CONFIGURE' }));
    },
  );
});

describe('assertDeviceName', () => {
  it('accepts kernel-style names, including a %d template', () => {
    expect(() => assertDeviceName('qg0')).not.toThrow();
    expect(() => assertDeviceName('quicgate%d')).not.toThrow();
    expect(() => assertDeviceName('a'.repeat(15))).not.toThrow();
  });

  it.each(['', 'a'.repeat(16), 'tun/0', 'tun 0', 'tun:0', '..'])('rejects "%s"', (name) => {
    expect(() => assertDeviceName(name)).toThrow(expect.objectContaining({ code: 'QG_ERR_TUN_CONFIGURE' }));
  });
});

describe('configureTun validation (before any command runs)', () => {
  const base = { name: 'qgt-none0', mtu: 1400, addresses: [{ cidr: '198.18.0.1/24' }], routes: [] };

  it('rejects a bad address, route, MTU or txqueuelen with QG_ERR_TUN_CONFIGURE', async () => {
    expect(await codeOf(configureTun({ ...base, addresses: [{ cidr: '198.18.0.300/24' }] }))).toBe('QG_ERR_TUN_CONFIGURE');
    expect(await codeOf(configureTun({ ...base, routes: ['2001:db8::/200'] }))).toBe('QG_ERR_TUN_CONFIGURE');
    expect(await codeOf(configureTun({ ...base, mtu: 100 }))).toBe('QG_ERR_TUN_CONFIGURE');
    expect(await codeOf(configureTun({ ...base, txQueueLen: 0 }))).toBe('QG_ERR_TUN_CONFIGURE');
    expect(await codeOf(addRoute('bad/name', '198.18.0.0/24'))).toBe('QG_ERR_TUN_CONFIGURE');
  });
});

describe('runIp', () => {
  it('names the command and the stderr of ip in the error', async () => {
    // Read-only command against a device that does not exist: fails without touching the host.
    const error = await runIp(['link', 'show', 'dev', 'qgt-absent9']).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(QuicgateError);
    const qg = error as QuicgateError;
    expect(qg.code).toBe('QG_ERR_TUN_CONFIGURE');
    expect(qg.message).toContain('ip link show dev qgt-absent9');
    expect(qg.details?.['stderr']).toMatch(/does not exist/);
  });

  it('resolves when ip succeeds', async () => {
    await expect(runIp(['link', 'show', 'dev', 'lo'])).resolves.toBeUndefined();
  });
});
