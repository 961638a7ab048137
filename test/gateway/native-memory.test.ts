import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { mallocStats, mallocTrim, residentMemory } from '../../src/gateway/native-memory.js';

const MiB = 1024 * 1024;

// A full GC without starting node with --expose-gc (the flag is read when a context is created).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Polls `check` (ArrayBuffer backing stores are freed by V8's background sweeper, shortly after the GC). */
async function eventually(check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check() && Date.now() < until) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('native memory figures (glibc malloc through the TUN addon, /proc/self/smaps_rollup)', () => {
  it('counts Buffer contents as malloc in use, as free-but-kept once collected, and malloc_trim gives the pages back', async () => {
    const start = mallocStats();
    expect(start).not.toBeNull();
    expect(start!.inUse).toBeGreaterThan(0);
    expect(start!.arenas).toBeGreaterThanOrEqual(1);
    expect(mallocStats(false)!.arenas).toBe(-1); // the trimmer's samples skip malloc_info

    // 80 MiB in 4 KB pieces: below the mmap threshold, so they come from the arenas (as TLS/HTTP/2 state does).
    let held: Buffer[] | null = Array.from({ length: 20_480 }, () => Buffer.allocUnsafeSlow(4096).fill(1));
    const full = mallocStats()!;
    expect(full.inUse - start!.inUse).toBeGreaterThan(70 * MiB);

    held = null;
    await eventually(() => mallocStats()!.inUse - start!.inUse < 30 * MiB);
    const freed = mallocStats()!;
    expect(held).toBeNull();
    expect(full.inUse - freed.inUse).toBeGreaterThan(50 * MiB);
    expect(freed.free - start!.free).toBeGreaterThan(40 * MiB);

    const before = residentMemory()!;
    expect(mallocTrim()).toBe(true);
    const after = residentMemory()!;
    expect(before.anon - after.anon).toBeGreaterThan(30 * MiB);
    expect(after.rss).toBe(after.anon + after.file);
  });

  it('reads resident anonymous and file-backed memory', () => {
    const resident = residentMemory();
    expect(resident).not.toBeNull();
    expect(resident!.anon).toBeGreaterThan(10 * MiB);
    expect(resident!.file).toBeGreaterThan(MiB);
  });
});
