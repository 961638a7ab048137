/**
 * The console's static files, built by `npm run build` (scripts/build-console.mjs) into dist/console/ and
 * read into memory once, gzipped once. Served from the admin listener only: no asset comes from anywhere
 * else, so the page works with no network and under a strict Content-Security-Policy.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';

/** dist/console of this package, both from src/admin (tests) and from dist/admin (built). */
export const CONSOLE_DIST_DIR = fileURLToPath(new URL('../../dist/console/', import.meta.url));

/** No inline script or style, no eval, nothing from another origin, never framed. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
};

export interface ConsoleAsset {
  readonly body: Buffer;
  readonly gzip: Buffer;
  readonly contentType: string;
  readonly etag: string;
}

export class ConsoleAssets {
  private constructor(
    private readonly files: ReadonlyMap<string, ConsoleAsset>,
    /** Why there are no files (the console was not built); null when there are. */
    readonly missing: string | null,
  ) {}

  static load(dir: string = CONSOLE_DIST_DIR): ConsoleAssets {
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => TYPES[extname(n)] !== undefined);
    } catch {
      return new ConsoleAssets(new Map(), `the console is not built (${dir} is missing): run \`npm run build\``);
    }
    const files = new Map<string, ConsoleAsset>();
    for (const name of names) {
      const body = readFileSync(join(dir, name));
      files.set(name, {
        body,
        gzip: gzipSync(body, { level: 9 }),
        contentType: TYPES[extname(name)] ?? 'application/octet-stream',
        etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
      });
    }
    if (!files.has('index.html')) return new ConsoleAssets(new Map(), `the console is not built (${dir}/index.html is missing): run \`npm run build\``);
    return new ConsoleAssets(files, null);
  }

  /** A file by its name in dist/console ("index.html", "app.js"); only plain names, no paths. */
  get(name: string): ConsoleAsset | undefined {
    return /^[A-Za-z0-9_-]+\.[a-z]+$/.test(name) ? this.files.get(name) : undefined;
  }
}
