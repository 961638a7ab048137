// postinstall: links bin/quicgate.js as node_modules/.bin/quicgate, so `npx quicgate …` runs this checkout's
// CLI at once. By hand because npm links the bins of dependencies only, never the package's own; and a "bin"
// field in package.json would make npm 11's `npx quicgate` install the checkout into its cache first (running
// its native build again), so package.json has none. Installed elsewhere: docs/operations.md links it.
import { chmodSync, lstatSync, mkdirSync, readlinkSync, symlinkSync, unlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const target = join(root, 'bin', 'quicgate.js');
const link = join(root, 'node_modules', '.bin', 'quicgate');
const wanted = relative(dirname(link), target);

chmodSync(target, 0o755);
mkdirSync(dirname(link), { recursive: true });
let current = null;
try {
  current = lstatSync(link).isSymbolicLink() ? readlinkSync(link) : '';
} catch (err) {
  if (err.code !== 'ENOENT') throw err;
}
if (current !== wanted) {
  if (current !== null) unlinkSync(link);
  symlinkSync(wanted, link);
}
