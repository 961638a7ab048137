// Builds the web console (web/) into dist/console/ with esbuild: one script, one stylesheet, index.html.
// Prints the gzip size of each file and fails when the page is over its 200 KB (gzip) budget.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

export const PAGE_BUDGET_GZIP_BYTES = 200 * 1024;
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'console');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(root, 'web/src/main.ts') },
  bundle: true,
  format: 'esm',
  target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
  minify: true,
  legalComments: 'none',
  sourcemap: false,
  outdir: out,
  logLevel: 'warning',
});
await build({
  entryPoints: { app: join(root, 'web/styles.css') },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: 'warning',
});
copyFileSync(join(root, 'web/index.html'), join(out, 'index.html'));

let total = 0;
const lines = [];
for (const name of readdirSync(out).sort()) {
  const body = readFileSync(join(out, name));
  const gz = gzipSync(body, { level: 9 }).length;
  total += gz;
  lines.push(`  ${name.padEnd(12)} ${(body.length / 1024).toFixed(1).padStart(7)} KB  ${(gz / 1024).toFixed(1).padStart(6)} KB gzip`);
}
console.log(`console built into dist/console:\n${lines.join('\n')}\n  total page weight ${(total / 1024).toFixed(1)} KB gzip (budget ${PAGE_BUDGET_GZIP_BYTES / 1024} KB)`);
if (total > PAGE_BUDGET_GZIP_BYTES) {
  console.error(`the console is over its page-weight budget: ${total} > ${PAGE_BUDGET_GZIP_BYTES} bytes gzip`);
  process.exit(1);
}
