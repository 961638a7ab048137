/**
 * What the process's memory consists of beyond V8's own figures: the C allocator's in-use and free-but-kept bytes
 * (glibc mallinfo2 through the TUN addon, native/src/alloc.cc), resident anonymous vs file-backed memory
 * (/proc/self/smaps_rollup), and malloc_trim. TLS, HTTP/2 (nghttp2), libuv and Buffers' backing stores live in
 * malloc; after a flood their freed chunks stay in the arenas until trimmed, which RSS alone cannot tell from a
 * leak (docs/robustness.md, "Floods from one host").
 */
import { readFileSync } from 'node:fs';
import { loadTunAddon, type NativeMallocStats, type NativeTunAddon } from '../tun/native.js';

export type { NativeMallocStats } from '../tun/native.js';

export interface ResidentMemory {
  /** Rss of /proc/self/smaps_rollup, bytes. */
  readonly rss: number;
  /** Anonymous: heap, stacks, V8's spaces, malloc arenas. */
  readonly anon: number;
  /** Rss - Anonymous: mapped files (the node binary, libraries) and shared memory. */
  readonly file: number;
}

let addon: NativeTunAddon | null | undefined;

function allocatorAddon(): NativeTunAddon | null {
  if (addon === undefined) {
    try {
      addon = loadTunAddon();
    } catch {
      addon = null; // not built: the gateway runs without the TUN addon only in tests; no allocator figures then
    }
  }
  return addon;
}

/**
 * The allocator's figures, or null without the addon (or a build before mallocStats) or without glibc.
 * countArenas false skips malloc_info (arenas is then -1): the trimmer's frequent samples need only the bytes.
 */
export function mallocStats(countArenas = true): NativeMallocStats | null {
  return allocatorAddon()?.mallocStats?.(countArenas) ?? null;
}

/** malloc_trim(0); null where it is not available, else whether memory went back to the system. */
export function mallocTrim(): boolean | null {
  const trim = allocatorAddon()?.mallocTrim;
  return trim === undefined ? null : trim();
}

/**
 * Resident anonymous bytes from /proc/self/statm (resident - shared pages): the kernel's counters, microseconds
 * to read, where smaps_rollup walks every mapping (~3 ms for a gateway). Null without the addon's page size.
 */
export function anonResidentBytes(): number | null {
  const pageSize = allocatorAddon()?.pageSize;
  if (pageSize === undefined) return null;
  let text: string;
  try {
    text = readFileSync('/proc/self/statm', 'utf8');
  } catch {
    return null;
  }
  const [, resident, shared] = text.split(' ').map(Number);
  return resident === undefined || shared === undefined || !Number.isFinite(resident - shared) ? null : (resident - shared) * pageSize;
}

/** /proc/self/smaps_rollup (Linux 4.14+); null where it cannot be read. */
export function residentMemory(): ResidentMemory | null {
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps_rollup', 'utf8');
  } catch {
    return null;
  }
  const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  const rss = kib('Rss');
  const anon = kib('Anonymous');
  return Number.isFinite(rss) && Number.isFinite(anon) ? { rss, anon, file: rss - anon } : null;
}
