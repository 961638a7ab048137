/**
 * The TUN write coalescer's fallback (native/src/gro.cc): when the kernel refuses a super-packet with EINVAL,
 * the members are written one by one and each counts as written or refused on its own. Compiled with the
 * system C++ compiler (the one node-gyp builds the addon with) against a fake writev, so no device is needed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('GRO write fallback on EINVAL', () => {
  it('counts the members the plain writes took as written, only the refused one as refused', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'qg-gro-'));
    try {
      const binary = path.join(dir, 'gro-fallback');
      execFileSync('c++', [
        '-std=c++17', '-O1', '-Wall', '-Werror',
        '-I', path.join(root, 'native', 'src'),
        path.join(root, 'native', 'src', 'gro.cc'),
        path.join(root, 'test', 'tun', 'native', 'gro-fallback.cc'),
        '-o', binary,
      ]);
      const out = execFileSync(binary, { encoding: 'utf8' }).trim();
      // One super-packet of four tried (EINVAL), then four plain writes of which the second is refused.
      expect(out).toBe('accepted=3 status=1011 superAttempts=1 plainWrites=4 udpEnabled=0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
