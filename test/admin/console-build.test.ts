/**
 * The built console (npm run build -> dist/console): within its page-weight budget, and written so the strict
 * Content-Security-Policy holds (no inline script or style, nothing from another origin).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CONSOLE_DIST_DIR } from '../../src/admin/console-assets.js';

const BUDGET_GZIP_BYTES = 200 * 1024;

function built(): Map<string, Buffer> {
  let names: string[];
  try {
    names = readdirSync(CONSOLE_DIST_DIR);
  } catch {
    throw new Error(`${CONSOLE_DIST_DIR} is missing: run \`npm run build\` first`);
  }
  return new Map(names.map((n) => [n, readFileSync(join(CONSOLE_DIST_DIR, n))]));
}

describe('the built console', () => {
  it(`weighs less than ${BUDGET_GZIP_BYTES / 1024} KB gzip in total`, () => {
    const files = built();
    expect([...files.keys()].sort()).toEqual(['app.css', 'app.js', 'index.html']);
    const total = [...files.values()].reduce((sum, body) => sum + gzipSync(body, { level: 9 }).length, 0);
    expect(total).toBeGreaterThan(10 * 1024); // it is the real bundle (Preact, htm, uPlot and the views), not a stub
    expect(total).toBeLessThan(BUDGET_GZIP_BYTES);
  });

  it('has no inline script, inline style, eval or asset from another origin', () => {
    const files = built();
    const html = files.get('index.html')?.toString('utf8') ?? '';
    for (const tag of html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/g)) {
      expect(tag[0]).toMatch(/\bsrc="app\.js"/);
      expect(tag[1]?.trim()).toBe('');
    }
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i);
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
    const js = files.get('app.js')?.toString('utf8') ?? '';
    expect(js).not.toMatch(/\beval\(|new Function\(/);
    expect(js).not.toMatch(/https?:\/\/(?!www\.w3\.org\/)[a-z0-9.-]+\.[a-z]{2,}\//i);
    const css = files.get('app.css')?.toString('utf8') ?? '';
    expect(css).not.toMatch(/@import|url\((?!data:)/);
  });
});
