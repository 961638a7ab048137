#!/usr/bin/env bash
# Builds the ngtcp2 spike. Needs Debian's libngtcp2-dev, libngtcp2-crypto-gnutls-dev, libgnutls28-dev, pkg-config,
# gcc and g++ (gro-glue.cc links quicgate's own TUN write coalescer, native/src/gro.cc, for QGQ_TUN_VNET).
set -euo pipefail
cd "$(dirname "$0")"
g++ -O2 -g -std=c++17 -c -o /tmp/qgq-gro.o ../../../native/src/gro.cc
g++ -O2 -g -std=c++17 -c -o /tmp/qgq-gro-glue.o gro-glue.cc
gcc -O2 -g -Wall -Wextra -c -o /tmp/qgq-ngtcp2-dgram.o ngtcp2-dgram.c $(pkg-config --cflags libngtcp2 libngtcp2_crypto_gnutls gnutls)
g++ -o ngtcp2-dgram /tmp/qgq-ngtcp2-dgram.o /tmp/qgq-gro-glue.o /tmp/qgq-gro.o $(pkg-config --libs libngtcp2 libngtcp2_crypto_gnutls gnutls)
