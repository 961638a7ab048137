#!/usr/bin/env bash
# The README's test command: sets up a fresh Debian machine (as root) and runs every test.
# Installs what the tests use from Debian's packages (iproute2, ping, iperf3), the npm dependencies (which
# builds the TUN addon, applies our patches and compiles TypeScript), then type check, unit and e2e tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
# The web console's browser tests (test/e2e/console.test.ts) drive Debian's chromium.
[[ -x /usr/bin/chromium ]] || need+=(chromium)
if ((${#need[@]})); then
  echo "# installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

npm ci --no-audit --no-fund
npm test
