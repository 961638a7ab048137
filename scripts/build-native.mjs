// Builds the native addons (native/) with node-gyp; run by package.json "install", so `npm install` builds them:
// quicgate_tun (the TUN addon, always) and quicgate_quic (quicgate's own QUIC transport on ngtcp2 + GnuTLS, when
// pkg-config finds Debian's libngtcp2-dev, libngtcp2-crypto-gnutls-dev and libgnutls28-dev; without them the
// gateway and client run without it and say why. Under CI=true their absence fails the build).
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

const QUIC_PACKAGES = ['libngtcp2', 'libngtcp2_crypto_gnutls', 'gnutls'];
const QUIC_DEBIAN = 'libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev pkg-config';
const probe = spawnSync('pkg-config', ['--exists', '--print-errors', ...QUIC_PACKAGES], { encoding: 'utf8' });
const withQuic = probe.status === 0;
if (!withQuic) {
  const why = probe.error ? 'pkg-config is not installed' : probe.stderr.trim() || `pkg-config does not find ${QUIC_PACKAGES.join(', ')}`;
  if (process.env.CI === 'true') {
    console.error(`quicgate: the QUIC addon cannot be built (${why}); install: apt-get install ${QUIC_DEBIAN}`);
    process.exit(1);
  }
  console.warn(`quicgate: building without the native QUIC transport (${why}); for it: apt-get install ${QUIC_DEBIAN}, then npm install`);
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nodeGyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
const args = [nodeGyp, 'rebuild', '--directory', path.join(root, 'native')];

const prefix = path.resolve(path.dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))) {
  args.push(`--nodedir=${prefix}`);
}
args.push('--', `-Dquicgate_quic=${withQuic ? 1 : 0}`);

const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error('quicgate: building the native addons failed (needs python3, make and a C++ compiler)');
  process.exit(result.status ?? 1);
}
