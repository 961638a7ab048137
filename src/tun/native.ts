/**
 * Loads the TUN addon (native/build/Release/quicgate_tun.node) and types its surface. The addon is built by
 * `npm install` (scripts/build-native.mjs); a missing or stale build is QG_ERR_NATIVE_MISSING.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QuicgateError } from '../errors.js';

/** One open TUN fd (see native/src/tun.cc). */
export interface NativeTun {
  readonly name: string;
  /** -1 once closed. */
  readonly fd: number;
  /** onPackets(count > 0): `count` packets were read into data/lengths; onPackets(-errno): reading stopped. */
  startReading(data: Uint8Array, lengths: Uint32Array, stride: number, onPackets: (count: number) => void): void;
  stopReading(): void;
  /** Returns 0 when written, else the errno the kernel returned. */
  write(data: Uint8Array, offset: number, length: number): number;
  /** Returns the number of packets the kernel accepted; status[i] = 1 accepted, 0 refused. */
  writeBatch(data: Uint8Array, lengths: Uint32Array, stride: number, count: number, status?: Uint8Array): number;
  /** Whether reads and writes carry a virtio_net_hdr (then writeBatch coalesces; see native/src/gro.h). */
  readonly vnetHdr: boolean;
  groStats(): NativeGroStats;
  close(): void;
}

/** Write-side coalescing so far: super-packets written, packets they carried, which kinds are on. */
export interface NativeGroStats {
  readonly superPackets: number;
  readonly coalescedPackets: number;
  readonly tcp: boolean;
  readonly udp: boolean;
}

export interface NativeTunAddon {
  /**
   * Opens /dev/net/tun as IFF_TUN|IFF_NO_PI (+IFF_VNET_HDR when `vnetHdr` and the kernel has it); throws an
   * Error with `errno` and `syscall` on failure.
   */
  Tun: new (name: string, vnetHdr?: boolean) => NativeTun;
}

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'quicgate_tun.node');
const BUILD_HINT = 'build it with `npm install` or `node scripts/build-native.mjs` (needs python3, make, g++)';

let cached: NativeTunAddon | undefined;

/** The addon, loaded once. Throws QG_ERR_NATIVE_MISSING when it is not built or cannot be loaded. */
export function loadTunAddon(): NativeTunAddon {
  if (cached !== undefined) return cached;
  const file = findAddonFile();
  if (file === undefined) {
    throw new QuicgateError('QG_ERR_NATIVE_MISSING', `the TUN addon ${ADDON_RELATIVE} is not built; ${BUILD_HINT}`);
  }
  let loaded: unknown;
  try {
    loaded = createRequire(import.meta.url)(file);
  } catch (err) {
    throw new QuicgateError('QG_ERR_NATIVE_MISSING', `the TUN addon ${file} cannot be loaded (${String(err)}); ${BUILD_HINT}`, {
      cause: err,
    });
  }
  if (!isAddon(loaded)) {
    throw new QuicgateError('QG_ERR_NATIVE_MISSING', `${file} is not the quicgate TUN addon; ${BUILD_HINT}`);
  }
  cached = loaded;
  return loaded;
}

// Same depth from src/tun/ (tsx, vitest) and dist/tun/ (compiled): the package root is two levels up.
function findAddonFile(): string | undefined {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const file = path.join(root, ADDON_RELATIVE);
  return existsSync(file) ? file : undefined;
}

function isAddon(value: unknown): value is NativeTunAddon {
  return typeof value === 'object' && value !== null && typeof (value as { Tun?: unknown }).Tun === 'function';
}
