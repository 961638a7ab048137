#!/usr/bin/env bash
# Builds the ngtcp2 spike. Needs Debian's libngtcp2-dev, libngtcp2-crypto-gnutls-dev, libgnutls28-dev, gcc.
set -euo pipefail
cd "$(dirname "$0")"
gcc -O2 -g -Wall -Wextra -o ngtcp2-dgram ngtcp2-dgram.c $(pkg-config --cflags --libs libngtcp2 libngtcp2_crypto_gnutls gnutls)
