import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { addressSignature, pollingPathWatch } from '../../src/client/path-watch.js';

const info = (address: string, internal = false): NetworkInterfaceInfo =>
  ({ address, netmask: '255.255.255.0', family: address.includes(':') ? 'IPv6' : 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: null }) as NetworkInterfaceInfo;

describe('path watch', () => {
  it('signs the host addresses without loopback and without the tunnel device, order-independent', () => {
    const a = addressSignature({ lo: [info('127.0.0.1', true)], eth0: [info('192.0.2.2'), info('2001:db8::2')], qgc0: [info('198.18.0.2')] }, 'qgc0');
    const b = addressSignature({ eth0: [info('2001:db8::2'), info('192.0.2.2')], qgc0: [info('198.18.0.9')] }, 'qgc0');
    expect(a).toBe(b);
    expect(addressSignature({ eth0: [info('192.0.2.3')] }, 'qgc0')).not.toBe(a);
  });

  it('reports a change once per change, and stops when told', async () => {
    let current: Record<string, NetworkInterfaceInfo[]> = { eth0: [info('192.0.2.2')] };
    let changes = 0;
    const stop = pollingPathWatch('qgc0', 5, () => current)(() => changes++);
    current = { eth0: [info('192.0.2.20')] };
    await new Promise((r) => setTimeout(r, 50));
    expect(changes).toBe(1);
    stop();
    current = { eth0: [info('192.0.2.21')] };
    await new Promise((r) => setTimeout(r, 30));
    expect(changes).toBe(1);
  });
});
