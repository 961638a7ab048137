/**
 * What the client changes outside its TUN, and undoes on exit:
 * - When the gateway pushes routes that cover the gateway's own address (e.g. a full tunnel), a host route
 *   to the gateway through the current path, so the tunnel does not swallow its own transport.
 * - With `set_dns`, /etc/resolv.conf pointed at the pushed DNS servers (the old file is restored).
 * Called before the TUN comes up, while the routing table still shows the real path to the gateway.
 */
import { execFile } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import { Address4, Address6 } from 'ip-address';
import type { Logger } from 'pino';
import type { ClientConfig } from '../config/types.js';
import type { AssignControl } from '../transport/control.js';

const run = promisify(execFile);
const RESOLV_CONF = '/etc/resolv.conf';

export async function systemSettingsFor(config: ClientConfig, assignment: AssignControl, logger: Logger): Promise<() => Promise<void>> {
  const undo: (() => Promise<void>)[] = [];
  try {
    const host = new URL(config.server).hostname.replace(/^\[|\]$/g, '');
    const address = isIP(host) ? host : (await lookup(host)).address;
    if (assignment.routes.some((route) => covers(route, address))) {
      const hostRoute = await pinRouteTo(address);
      if (hostRoute !== null) {
        logger.info({ route: hostRoute.join(' ') }, 'route to the gateway kept outside the tunnel');
        undo.push(() => ip(['route', 'del', ...hostRoute]).then(() => undefined));
      }
    }
    if (config.setDns && assignment.dns.length > 0) {
      const previous = await readFile(RESOLV_CONF, 'utf8').catch(() => null);
      await writeFile(RESOLV_CONF, `# written by quicgate client; restored on exit\n${assignment.dns.map((d) => `nameserver ${d}`).join('\n')}\n`);
      undo.push(async () => {
        if (previous !== null) await writeFile(RESOLV_CONF, previous);
      });
      logger.info({ dns: assignment.dns }, 'DNS servers set');
    }
  } catch (err) {
    await undoAll(undo);
    throw err;
  }
  return () => undoAll(undo);
}

async function undoAll(steps: (() => Promise<void>)[]): Promise<void> {
  for (const step of steps.reverse()) await step().catch(() => undefined);
}

function covers(cidr: string, address: string): boolean {
  try {
    if (address.includes(':')) return cidr.includes(':') && new Address6(address).isInSubnet(new Address6(cidr));
    return !cidr.includes(':') && new Address4(address).isInSubnet(new Address4(cidr));
  } catch {
    return false;
  }
}

/** `ip route get` the gateway and pin that path as a host route; returns the route's arguments. */
async function pinRouteTo(address: string): Promise<string[] | null> {
  const family = address.includes(':') ? '-6' : '-4';
  const { stdout } = await run('ip', [family, 'route', 'get', address]);
  const via = /\bvia (\S+)/.exec(stdout)?.[1];
  const dev = /\bdev (\S+)/.exec(stdout)?.[1];
  if (dev === undefined) return null;
  const route = [`${address}/${family === '-6' ? 128 : 32}`, ...(via ? ['via', via] : []), 'dev', dev];
  await ip(['route', 'replace', ...route]);
  return route;
}

function ip(args: string[]): Promise<unknown> {
  return run('ip', args);
}
