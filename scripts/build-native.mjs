// Builds the TUN addon (native/) with node-gyp; run by package.json "install", so `npm install` builds it.
// Offline: node-gyp downloads headers unless told where they are, so pass --nodedir when npm did not
// (npm_config_nodedir) and the running Node ships its headers (<prefix>/include/node, as Debian and nvm do).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

if (process.platform !== 'linux') {
  console.log('quicgate: the TUN addon is Linux-only; skipping the native build');
  process.exit(0);
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nodeGyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
const args = [nodeGyp, 'rebuild', '--directory', path.join(root, 'native')];

const prefix = path.resolve(path.dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))) {
  args.push(`--nodedir=${prefix}`);
}

const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error('quicgate: building the TUN addon failed (needs python3, make and a C++ compiler)');
  process.exit(result.status ?? 1);
}
