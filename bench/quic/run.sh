#!/usr/bin/env bash
# bench/quic/run.sh - the QUIC route spikes side by side (docs/quic-route.md): one-way 1200-byte datagrams
# between two namespaces (qgq-a 192.0.2.1 receives, qgq-b 192.0.2.2 sends, one veth), per case the received
# datagrams/s, Mbit/s and CPU seconds of both processes per GB received. Not part of the build or CI.
#
#   sudo bench/quic/run.sh                       # all cases, DUR=5, REPS=1 (cases interleaved per rep)
#   sudo CASES="udp_iperf lib quinn" DUR=5 RATES="0" bench/quic/run.sh
#   sudo NODE_OPTS="--cpu-prof --cpu-prof-dir=/tmp/qgq-prof" CASES=lib bench/quic/run.sh
#
# Cases: udp_iperf (iperf3 -u -b 0 -l 1200, the kernel's plain-UDP figure), udp_node (node:dgram, one send and
# one 'message' per packet: what any JS-per-packet design pays at least), lib (the library's HTTP/3 module:
# WebTransport datagrams), quinn (Debian's quinn 0.9: QUIC datagrams, GSO send, recvmmsg; bench/quic/quinn-dgram),
# ngtcp2 (Debian's ngtcp2 0.12 + GnuTLS; bench/quic/ngtcp2-dgram). Needs root, iperf3, node; quinn/ngtcp2 are
# built by their own build.sh first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
DUR=${DUR:-5}
LEN=${LEN:-1200}
CASES=${CASES:-udp_iperf udp_node lib quinn ngtcp2}
RATES=${RATES:-0}
NODE_OPTS=${NODE_OPTS:-}
WORK=${WORK:-/tmp/qgq-run}
A=qgq-a B=qgq-b
mkdir -p "$WORK"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT INT TERM
cleanup
ip netns add $A; ip netns add $B
ip link add qgq-va netns $A type veth peer name qgq-vb netns $B
ip -n $A addr add 192.0.2.1/24 dev qgq-va; ip -n $B addr add 192.0.2.2/24 dev qgq-vb
ip -n $A link set qgq-va up; ip -n $B link set qgq-vb up
ip -n $A link set lo up; ip -n $B link set lo up
# net.core.rmem_* are host-wide here (not settable in a namespace): every receiver asks for 4 MiB itself
# (SO_RCVBUF, capped by the host's rmem_max); kernel drops show as RcvbufErrors below.

if [ ! -f "$WORK/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 13 -subj /CN=quic.test \
    -addext subjectAltName=DNS:quic.test,IP:192.0.2.1 -addext basicConstraints=critical,CA:FALSE -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
fi
hash=$(openssl x509 -in "$WORK/cert.pem" -outform der | sha256sum | cut -d' ' -f1)

# cpu seconds (utime+stime) of a pid
cpu() { awk '{print ($14+$15)/100}' /proc/$1/stat 2>/dev/null || echo 0; }

report() { # name rx_dgrams_per_s rx_mbit cpu_total_s rx_bytes [extra]
  local gb
  gb=$(awk -v b="$5" 'BEGIN{printf "%.3f", b/1e9}')
  awk -v n="$1" -v d="$2" -v m="$3" -v c="$4" -v gb="$gb" -v x="${6:-}" -v la="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN{printf "%-22s %9d dgram/s %8.1f Mbit/s  cpu %6.2f s  %7.1f cpu-s/GB  load %s  %s\n", n, d, m, c, (gb>0? c/gb : 0), la, x}' | tee -a "$WORK/results.txt"
}

run_udp_iperf() {
  ip netns exec $A iperf3 -s -1 -p 5301 >/dev/null 2>&1 & pids+=($!); local sp=$!; sleep 0.5
  ip netns exec $B iperf3 -c 192.0.2.1 -p 5301 -u -b 0 -l "$LEN" -t "$DUR" -J > "$WORK/iperf.json" 2>/dev/null || true
  wait "$sp" 2>/dev/null || true
  local bps lost pk
  bps=$(jq '.end.sum.bits_per_second' "$WORK/iperf.json"); lost=$(jq '.end.sum.lost_percent' "$WORK/iperf.json")
  pk=$(jq '.end.sum.packets - .end.sum.lost_packets' "$WORK/iperf.json")
  local cpu_pct; cpu_pct=$(jq '.end.cpu_utilization_percent.host_total + .end.cpu_utilization_percent.remote_total' "$WORK/iperf.json")
  # end.sum: packets/lost_packets as the receiver counted them; bits_per_second is the sender's offered rate
  report udp_iperf "$(awk -v p="$pk" -v d="$DUR" 'BEGIN{print int(p/d)}')" "$(awk -v p="$pk" -v l="$LEN" -v d="$DUR" 'BEGIN{print p*l*8/d/1e6}')" \
    "$(awk -v c="$cpu_pct" -v d="$DUR" 'BEGIN{print c/100*d}')" "$(awk -v p="$pk" -v l="$LEN" 'BEGIN{print p*l}')" "offered $(awk -v b="$bps" 'BEGIN{printf "%.0f", b/1e6}') Mbit/s, loss ${lost}%"
}

# UDP receive-buffer drops and datagrams received in namespace A (kernel counters)
udp_rx_counters() { ip netns exec $A awk '/^Udp: [0-9]/{print $2, $6}' /proc/net/snmp; }

# generic two-process case: server cmd prints one JSON rx line, client one JSON tx line
run_pair() { # name "server cmd" "client cmd"
  local name=$1 before after
  before=$(udp_rx_counters)
  ip netns exec $A bash -c "$2" > "$WORK/$name.srv" 2> "$WORK/$name.srv.err" & pids+=($!); local sp=$!
  sleep 1.5
  ip netns exec $B bash -c "$3" > "$WORK/$name.cli" 2> "$WORK/$name.cli.err" || true
  wait "$sp" || true
  after=$(udp_rx_counters)
  local rx tx
  rx=$(grep '"side":"rx"' "$WORK/$name.srv" | tail -1); tx=$(grep '"side":"tx"' "$WORK/$name.cli" | tail -1)
  if [ -z "$rx" ] || [ -z "$tx" ]; then echo "$name: FAILED (see $WORK/$name.*)" | tee -a "$WORK/results.txt"; return; fi
  report "$name" "$(jq .dgrams_per_s <<<"$rx")" "$(jq .mbit_s <<<"$rx")" \
    "$(jq -n "$(jq .cpu_s <<<"$rx") + $(jq .cpu_s <<<"$tx")")" "$(jq .bytes <<<"$rx")" \
    "sent $(jq .sent_per_s <<<"$tx")/s, cpu rx $(jq .cpu_s <<<"$rx") tx $(jq .cpu_s <<<"$tx"), kernel rcvbuf drops $(awk -v a="$after" -v b="$before" 'BEGIN{split(a,x," ");split(b,y," ");print x[2]-y[2]}')"
}

echo "# $(date -u +%FT%TZ) $(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) kernel $(uname -r) node $(node -v) DUR=$DUR LEN=$LEN" | tee -a "$WORK/results.txt"
REPS=${REPS:-1}
for rep in $(seq "$REPS"); do
for c in $CASES; do
  case $c in
    udp_iperf) run_udp_iperf ;;
    udp_node) for r in $RATES; do run_pair "udp_node@$r" "node $here/udp-node.mjs server 192.0.2.1 5302 $DUR" "node $here/udp-node.mjs client 192.0.2.1 5302 $DUR $LEN $r"; done ;;
    lib) for r in $RATES; do run_pair "lib@$r" "cd $root && node $NODE_OPTS $here/lib-dgram.mjs server 192.0.2.1 5303 $WORK/cert.pem $WORK/key.pem $DUR" \
           "cd $root && node $NODE_OPTS $here/lib-dgram.mjs client 192.0.2.1 5303 $hash $DUR $LEN $r"; done ;;
    quinn) for r in $RATES; do run_pair "quinn@$r" "$here/quinn-dgram/target/release/quinn-dgram server 192.0.2.1:5304 $WORK/cert.pem $WORK/key.pem $DUR" \
           "$here/quinn-dgram/target/release/quinn-dgram client 192.0.2.1:5304 $WORK/cert.pem $DUR $LEN $r"; done ;;
    ngtcp2) for r in $RATES; do run_pair "ngtcp2@$r" "$here/ngtcp2-dgram/ngtcp2-dgram server 192.0.2.1 5305 $WORK/cert.pem $WORK/key.pem $DUR" \
           "$here/ngtcp2-dgram/ngtcp2-dgram client 192.0.2.1 5305 $WORK/cert.pem $DUR $LEN $r"; done ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
done
done
