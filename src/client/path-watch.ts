/**
 * Notices when the host's own addresses change (a roaming client: new Wi-Fi, DHCP lease, readdressed link), so
 * the tunnel client can probe its path at once instead of waiting for missed keepalives.
 *
 * Polls os.networkInterfaces() every `intervalMs` and compares the set of non-loopback addresses, leaving out
 * the tunnel's own device. Polling by hand: Node has no address-change event and no npm package offers one
 * without a native netlink module; one call per quarter second costs microseconds.
 */
import { networkInterfaces } from 'node:os';
import type { PathWatch } from './tunnel-client.js';

export const DEFAULT_PATH_POLL_MS = 250;

/** The host's addresses as one comparable string (sorted "device address" pairs). */
export function addressSignature(interfaces: ReturnType<typeof networkInterfaces>, ignoreDevice: string): string {
  const entries: string[] = [];
  for (const [name, addresses] of Object.entries(interfaces)) {
    if (name === ignoreDevice || addresses === undefined) continue;
    for (const a of addresses) if (!a.internal) entries.push(`${name} ${a.address}`);
  }
  return entries.sort().join('\n');
}

export function pollingPathWatch(tunName: string, intervalMs = DEFAULT_PATH_POLL_MS, read = networkInterfaces): PathWatch {
  return (onChange) => {
    let last = addressSignature(read(), tunName);
    const timer = setInterval(() => {
      const now = addressSignature(read(), tunName);
      if (now === last) return;
      last = now;
      onChange();
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  };
}
