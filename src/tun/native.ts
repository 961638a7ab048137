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
  /**
   * onPackets(count > 0): `count` packets were read into data/lengths (and their GSO info into meta, 5 entries
   * per slot; see TunBatch); onPackets(-errno): reading stopped. Without meta, super-packets are dropped.
   */
  startReading(data: Uint8Array, lengths: Uint32Array, stride: number, onPackets: (count: number) => void, meta?: Uint16Array): void;
  stopReading(): void;
  /** Returns 0 when written, else the errno the kernel returned. */
  write(data: Uint8Array, offset: number, length: number): number;
  /** Returns the number of packets the kernel accepted; status[i] = 1 accepted, 0 refused. */
  writeBatch(data: Uint8Array, lengths: Uint32Array, stride: number, count: number, status?: Uint8Array): number;
  /** Whether reads and writes carry a virtio_net_hdr (then writeBatch coalesces; see native/src/gro.h). */
  readonly vnetHdr: boolean;
  /** Whether the kernel took TUNSETOFFLOAD with TSO4/TSO6: reads deliver TCP super-packets (native/src/gso.h). */
  readonly tso: boolean;
  /** Whether it also took USO4/USO6 (kernel 6.2+): UDP super-packets too. */
  readonly uso: boolean;
  /** One super-packet as a unit (or segmented where the device cannot): 0, EINVAL (malformed) or errno. */
  writeGso(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): number;
  groStats(): NativeGroStats;
  close(): void;
}

/** Write-side coalescing so far: super-packets written, packets they carried, which kinds are on. */
export interface NativeGroStats {
  readonly superPackets: number;
  readonly coalescedPackets: number;
  readonly tcp: boolean;
  readonly udp: boolean;
  /** Super-packets read (TSO/USO), and those dropped because they did not parse. */
  readonly superPacketsRead: number;
  readonly badSuperPacketsRead: number;
  /** Super-packets written as a unit by writeGso. */
  readonly superPacketsWritten: number;
}

export interface NativeTunAddon {
  /**
   * Opens /dev/net/tun as IFF_TUN|IFF_NO_PI (+IFF_VNET_HDR when `vnetHdr` and the kernel has it; + TSO/USO
   * reads when `tso` too); throws an Error with `errno` and `syscall` on failure.
   */
  Tun: new (name: string, vnetHdr?: boolean, tso?: boolean) => NativeTun;
  /**
   * Software segmentation of a super-packet into out + i * stride (lengths[i]): the segment count, -1 when
   * src is not a well-formed super-packet of `kind`, -2 when the segments do not fit out.
   */
  gsoSplit(
    src: Uint8Array,
    offset: number,
    length: number,
    kind: number,
    gsoSize: number,
    out: Uint8Array,
    stride: number,
    lengths: Uint32Array,
  ): number;
  /** glibc's allocator figures (native/src/alloc.cc); null where the C library has no mallinfo2. Absent in an older build. */
  mallocStats?: (countArenas?: boolean) => NativeMallocStats | null;
  /** malloc_trim(0): true when memory went back to the system. Absent in an older build. */
  mallocTrim?: () => boolean;
  /** sysconf(_SC_PAGESIZE). Absent in an older build. */
  readonly pageSize?: number;
}

/** mallinfo2 of the whole process, bytes (arenas: a count, -1 when not counted or malloc_info failed); see native/src/alloc.cc. */
export interface NativeMallocStats {
  /** Handed out and not freed (uordblks + hblkhd). */
  readonly inUse: number;
  /** Freed, kept in the arenas (fordblks); resident or already given back page-wise by a trim. */
  readonly free: number;
  /** Of inUse: chunks in their own mappings (hblkhd). */
  readonly mmapped: number;
  /** Obtained from the system by the arenas (arena). */
  readonly arenaBytes: number;
  /** Free at the top of the main heap (keepcost). */
  readonly topReleasable: number;
  readonly arenas: number;
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
  const addon = value as { Tun?: unknown; gsoSplit?: unknown } | null;
  return typeof value === 'object' && addon !== null && typeof addon.Tun === 'function' && typeof addon.gsoSplit === 'function';
}
