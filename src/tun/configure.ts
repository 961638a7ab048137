/**
 * Configures a TUN device with iproute2 (`ip`, argument arrays, no shell) and a few per-device sysctls.
 *
 * Flow of configureTun: validate -> IPv6 sysctls (device still down) -> mtu + txqueuelen -> addresses -> up -> routes.
 *
 * IPv6 noise policy: with no IPv6 address or route the device gets disable_ipv6=1, so the kernel sends no IPv6
 * at all into it. With IPv6 it gets addr_gen_mode=1 (no link-local address; a point-to-point L3 tunnel needs
 * none), accept_ra=0 and router_solicitations=0, so no router solicitations. The kernel may still send the odd
 * MLD report; readers must drop packets they do not route anyway.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { QuicgateError } from '../errors.js';
import type { TunSettings } from './device.js';

/** txqueuelen used when settings leave it out: the default 500 overflows during GC pauses at high rates. */
export const DEFAULT_TX_QUEUE_LEN = 4096;

const IP_TIMEOUT_MS = 10_000;

export type IpFamily = 4 | 6;

/** Family of a CIDR like "198.18.0.1/24" or "2001:db8::1/64"; throws QG_ERR_TUN_CONFIGURE if it is not one. */
export function cidrFamily(cidr: string): IpFamily {
  const slash = cidr.indexOf('/');
  const address = slash < 0 ? cidr : cidr.slice(0, slash);
  const prefixText = slash < 0 ? undefined : cidr.slice(slash + 1);
  const family: IpFamily | undefined = isIPv4(address) ? 4 : isIPv6(address) ? 6 : undefined;
  const prefix = prefixText === undefined ? undefined : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (family === undefined || prefix === undefined || !(prefix <= (family === 4 ? 32 : 128))) {
    throw new QuicgateError('QG_ERR_TUN_CONFIGURE', `"${cidr}" is not an IPv4 or IPv6 CIDR (address/prefix)`, {
      details: { cidr },
    });
  }
  return family;
}

/** Throws QG_ERR_TUN_CONFIGURE unless `name` is a usable interface name (at most 15 bytes, no "/" or space). */
export function assertDeviceName(name: string): void {
  if (name.length === 0 || Buffer.byteLength(name) > 15 || /[\s/:]/.test(name) || name === '.' || name === '..') {
    throw new QuicgateError('QG_ERR_TUN_CONFIGURE', `"${name}" is not a valid interface name (1-15 bytes, no "/", ":" or spaces)`, {
      details: { device: name },
    });
  }
}

export async function configureTun(settings: TunSettings): Promise<void> {
  const device = settings.name;
  assertDeviceName(device);
  if (!Number.isInteger(settings.mtu) || settings.mtu < 576 || settings.mtu > 65535) {
    throw new QuicgateError('QG_ERR_TUN_CONFIGURE', `MTU ${settings.mtu} is outside 576..65535`, { details: { device } });
  }
  const txQueueLen = settings.txQueueLen ?? DEFAULT_TX_QUEUE_LEN;
  if (!Number.isInteger(txQueueLen) || txQueueLen < 1) {
    throw new QuicgateError('QG_ERR_TUN_CONFIGURE', `txqueuelen ${txQueueLen} is not a positive integer`, { details: { device } });
  }
  const addresses = settings.addresses.map((a) => ({ cidr: a.cidr, family: cidrFamily(a.cidr) }));
  const routes = settings.routes.map((cidr) => ({ cidr, family: cidrFamily(cidr) }));
  const usesIPv6 = addresses.some((a) => a.family === 6) || routes.some((r) => r.family === 6);

  await quietIPv6(device, usesIPv6);
  await runIp(['link', 'set', 'dev', device, 'mtu', String(settings.mtu), 'txqueuelen', String(txQueueLen)]);
  for (const address of addresses) {
    const args = ['-' + String(address.family), 'addr', 'add', address.cidr, 'dev', device];
    await runIp(address.family === 6 ? [...args, 'nodad'] : args);
  }
  await runIp(['link', 'set', 'dev', device, 'up']);
  const ipv4Mtu = settings.ipv4Mtu !== undefined && settings.ipv4Mtu < settings.mtu ? settings.ipv4Mtu : undefined;
  if (ipv4Mtu !== undefined) {
    if (!Number.isInteger(ipv4Mtu) || ipv4Mtu < 576) throw new QuicgateError('QG_ERR_TUN_CONFIGURE', `IPv4 MTU ${ipv4Mtu} is below 576`, { details: { device } });
    // The connected route of each IPv4 address, replaced by the same route with the lower MTU.
    for (const address of addresses.filter((a) => a.family === 4)) {
      const [ip, prefix] = address.cidr.split('/') as [string, string];
      await runIp(['-4', 'route', 'replace', `${ipv4Network(ip, Number(prefix))}/${prefix}`, 'dev', device, 'proto', 'kernel', 'scope', 'link', 'src', ip, 'mtu', String(ipv4Mtu)]);
    }
  }
  for (const route of routes) await addRoute(device, route.cidr, route.family === 4 ? ipv4Mtu : undefined);
}

function ipv4Network(ip: string, prefix: number): string {
  const value = ip.split('.').reduce((acc, part) => (acc << 8) | Number(part), 0) >>> 0;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const net = (value & mask) >>> 0;
  return [24, 16, 8, 0].map((shift) => (net >>> shift) & 0xff).join('.');
}

/** Routes `cidr` into `device` (replacing an existing route to the same prefix, so it is idempotent). */
export async function addRoute(device: string, cidr: string, mtu?: number): Promise<void> {
  assertDeviceName(device);
  const family = cidrFamily(cidr);
  await runIp(['-' + String(family), 'route', 'replace', cidr, 'dev', device, ...(mtu === undefined ? [] : ['mtu', String(mtu)])]);
}

/** Runs `ip ...args`; failures become QG_ERR_TUN_CONFIGURE naming the command and ip's stderr. */
export function runIp(args: readonly string[]): Promise<void> {
  const command = `ip ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: IP_TIMEOUT_MS, encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (err === null) {
        resolve();
        return;
      }
      const reason = stderr.trim() || err.message;
      const hint = (err as NodeJS.ErrnoException).code === 'ENOENT' ? ' (is iproute2 installed?)' : '';
      reject(
        new QuicgateError('QG_ERR_TUN_CONFIGURE', `\`${command}\` failed: ${reason}${hint}`, {
          cause: err,
          details: { command, stderr: stderr.trim() },
        }),
      );
    });
  });
}

async function quietIPv6(device: string, usesIPv6: boolean): Promise<void> {
  const dir = `/proc/sys/net/ipv6/conf/${device}`;
  if (!existsSync(dir)) return; // IPv6 is off in this kernel or namespace: nothing will be sent
  const values: Record<string, string> = usesIPv6
    ? { addr_gen_mode: '1', accept_ra: '0', router_solicitations: '0' }
    : { disable_ipv6: '1' };
  for (const [key, value] of Object.entries(values)) {
    try {
      await writeFile(`${dir}/${key}`, value);
    } catch (err) {
      throw new QuicgateError('QG_ERR_TUN_CONFIGURE', `setting ${dir}/${key}=${value} failed: ${String(err)}`, {
        cause: err,
        details: { device, sysctl: `${dir}/${key}` },
      });
    }
  }
}
