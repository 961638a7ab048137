import { constants as osConstants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { QuicgateError } from '../../src/errors.js';
import { LinuxTun } from '../../src/tun/linux.js';
import { loadTunAddon } from '../../src/tun/native.js';

// Only what needs no device: creating TUNs belongs in test/e2e/tun.test.ts, inside a namespace.
describe('TUN addon loader', () => {
  it('loads the built addon once and exposes the Tun class', () => {
    const addon = loadTunAddon();
    expect(typeof addon.Tun).toBe('function');
    expect(loadTunAddon()).toBe(addon);
  });

  it('reports native open failures with errno and syscall', () => {
    const { Tun } = loadTunAddon();
    expect(() => new Tun('x'.repeat(16))).toThrow(expect.objectContaining({ syscall: 'TUNSETIFF', errno: osConstants.errno.ENAMETOOLONG }));
  });

  it('LinuxTun.open turns them into QG_ERR_TUN_OPEN naming the errno', async () => {
    const error = await LinuxTun.open({ name: 'y'.repeat(16), mtu: 1400, addresses: [], routes: [] }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(QuicgateError);
    expect((error as QuicgateError).code).toBe('QG_ERR_TUN_OPEN');
    expect((error as QuicgateError).message).toContain('ENAMETOOLONG');
  });

  it('LinuxTun.open rejects a batch size outside 1..4096 before opening anything', async () => {
    await expect(LinuxTun.open({ name: 'qgt-x0', mtu: 1400, addresses: [], routes: [] }, { batchSize: 0 })).rejects.toMatchObject({
      code: 'QG_ERR_TUN_OPEN',
    });
  });
});
