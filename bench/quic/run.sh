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
# WebTransport datagrams; lib+addr,rx,tx: with the JS-side fixes of lib-dgram.mjs), quinn (Debian's quinn 0.9: QUIC datagrams, GSO send, recvmmsg; bench/quic/quinn-dgram),
# ngtcp2 (Debian's ngtcp2 0.12 + GnuTLS; bench/quic/ngtcp2-dgram), ngtcp2_js (the same, and every received
# datagram handed in batches to a node process that handles it as quicgate's inbound path would: batch-sink.mjs). Needs root, iperf3, node; quinn/ngtcp2 are
# built by their own build.sh first.
#
# Tunnel cases (TCP through a tunnel, iperf3 one stream up 198.18.0.2 -> 198.18.0.1, CPU of the two tunnel
# processes per GB): tun_wg (../shared/tools/bin/wireguard-go-modern), tun_qg_h3 (quicgate over HTTP/3 with the
# library: the built bin/quicgate.js, tunnel offload on), tun_ngtcp2 (the ngtcp2 spike carrying TUN packets:
# QGQ_TUN, one read per TUN packet, no TUN offloads), tun_ngtcp2_gro (the same with quicgate's TUN write
# coalescer, native/src/gro.cc, on the receiving TUNs: QGQ_TUN_VNET), tun_ngtcp2_tso (and TSO reads, IPv4 TCP
# super-packets segmented into datagrams in the spike: QGQ_TUN_TSO).
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

TUN_MTU=${TUN_MTU:-1400}
WG=${WG:-$root/../shared/tools/bin/wireguard-go-modern}
wait_for() { local i; for i in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "timeout: $*" >&2; return 1; }

iperf_up() { [ -n "$(ip netns exec $A ss -Hltn 'sport = :5311')" ]; }

tcp_through() { # name pid_a pid_b: iperf3 TCP up for DUR through 198.18.0.1, CPU of both pids
  local name=$1 pa=$2 pb=$3 ca cb
  if ! wait_for ip netns exec $B ping -n -q -c1 -W1 198.18.0.1; then echo "$name: FAILED (no tunnel)" | tee -a "$WORK/results.txt"; return; fi
  ip netns exec $A iperf3 -s -1 -B 198.18.0.1 -p 5311 >/dev/null 2>&1 & pids+=($!); wait_for iperf_up
  ip netns exec $B iperf3 -c 198.18.0.1 -p 5311 -t 1 >/dev/null 2>&1 || true   # warm-up
  sleep 0.2
  ip netns exec $A iperf3 -s -1 -B 198.18.0.1 -p 5311 >/dev/null 2>&1 & pids+=($!); wait_for iperf_up 
  ca=$(cpu "$pa"); cb=$(cpu "$pb")
  ip netns exec $B iperf3 -c 198.18.0.1 -p 5311 -t "$DUR" -J > "$WORK/$name.json" 2>/dev/null || true
  local c; c=$(awk -v a0="$ca" -v b0="$cb" -v a1="$(cpu "$pa")" -v b1="$(cpu "$pb")" 'BEGIN{print a1-a0+b1-b0}')
  local bps; bps=$(jq '.end.sum_received.bits_per_second // 0' "$WORK/$name.json" 2>/dev/null || echo 0)
  if [ "$bps" = 0 ]; then echo "$name: FAILED (no iperf3 result, see $WORK/$name.json)" | tee -a "$WORK/results.txt"; kill "$pa" "$pb" 2>/dev/null || true; return; fi
  report "$name" 0 "$(awk -v b="$bps" 'BEGIN{print b/1e6}')" "$c" "$(jq '.end.sum_received.bytes // 0' "$WORK/$name.json")" \
    "TCP up, retransmits $(jq '.end.sum_sent.retransmits // 0' "$WORK/$name.json")"
  kill "$pa" "$pb" 2>/dev/null || true; wait "$pa" "$pb" 2>/dev/null || true
}

tun_addr() { # ns dev addr
  wait_for ip -n "$1" link show "$2"
  ip -n "$1" addr add "$3"/24 dev "$2"; ip -n "$1" link set "$2" mtu "$TUN_MTU" up
}

run_tun_ngtcp2() { # name [env...]: the ngtcp2 spike between two TUNs
  local bin=$here/ngtcp2-dgram/ngtcp2-dgram name=$1; shift
  ip netns exec $A env QGQ_TUN=qgq-t0 "$@" "$bin" server 192.0.2.1 5306 "$WORK/cert.pem" "$WORK/key.pem" 1 2> "$WORK/$name.srv.err" & local pa=$!; pids+=($pa)
  tun_addr $A qgq-t0 198.18.0.1; sleep 0.3
  ip netns exec $B env QGQ_TUN=qgq-t1 "$@" "$bin" client 192.0.2.1 5306 "$WORK/cert.pem" 1 1200 0 2> "$WORK/$name.cli.err" & local pb=$!; pids+=($pb)
  tun_addr $B qgq-t1 198.18.0.2
  tcp_through "$name" "$pa" "$pb"
}

run_tun_wg() {
  local d=$WORK/wg; mkdir -p "$d"; ( umask 077; wg genkey > "$d/a.key"; wg genkey > "$d/b.key" )
  ip netns exec $A env WG_PROCESS_FOREGROUND=1 "$WG" -f qgq-wa > "$d/a.log" 2>&1 & local pa=$!; pids+=($pa)
  ip netns exec $B env WG_PROCESS_FOREGROUND=1 "$WG" -f qgq-wb > "$d/b.log" 2>&1 & local pb=$!; pids+=($pb)
  wait_for test -S /var/run/wireguard/qgq-wa.sock -a -S /var/run/wireguard/qgq-wb.sock
  ip netns exec $A wg set qgq-wa private-key "$d/a.key" listen-port 5307 peer "$(wg pubkey < "$d/b.key")" allowed-ips 198.18.0.2/32 endpoint 192.0.2.2:5307
  ip netns exec $B wg set qgq-wb private-key "$d/b.key" listen-port 5307 peer "$(wg pubkey < "$d/a.key")" allowed-ips 198.18.0.1/32 endpoint 192.0.2.1:5307
  ip -n $A addr add 198.18.0.1/24 dev qgq-wa; ip -n $A link set qgq-wa up
  ip -n $B addr add 198.18.0.2/24 dev qgq-wb; ip -n $B link set qgq-wb up
  tcp_through "tun_wg($("$WG" --version 2>&1 | awk '{print $2; exit}'))" "$pa" "$pb"
}

run_tun_qg_h3() {
  local d=$WORK/qg; rm -rf "$d"; mkdir -p "$d"
  local hash; hash=$(cd "$root" && node --input-type=module -e "
    const { hashPassword } = await import('$root/dist/config/password.js');
    process.stdout.write(await hashPassword('bench-pw', { ln: 10, r: 8, p: 1 }));")
  printf 'users:\n  - name: bench\n    password_hash: "%s"\n    bandwidth: unlimited\n' "$hash" > "$d/users.yaml"
  printf 'listen: { address: 192.0.2.1, port: 5308 }\ntransports: { h2: true, h3: auto }\ntunnel:\n  offload: true\n  ipv4: { network: 198.18.0.0/15, gateway: 198.18.0.1 }\n  ipv6: null\nlog_level: info\nusers_file: %s\ndata_dir: %s\n' "$d/users.yaml" "$d/data" > "$d/server.yaml"
  ip netns exec $A node $NODE_OPTS "$root/bin/quicgate.js" server --config "$d/server.yaml" > "$d/server.log" 2>&1 & local pa=$!; pids+=($pa)
  wait_for grep -q '"gateway up"' "$d/server.log"
  printf 'server: https://192.0.2.1:5308/\nuser: bench\npassword: bench-pw\ntransport: h3\nca_file: %s\ntun_name: qgq-qc\ntun_offload: true\n' "$d/data/ca.pem" > "$d/client.yaml"
  ip netns exec $B node $NODE_OPTS "$root/bin/quicgate.js" client --config "$d/client.yaml" > "$d/client.log" 2>&1 & local pb=$!; pids+=($pb)
  wait_for grep -q '"tunnel up"' "$d/client.log"
  tcp_through tun_qg_h3 "$pa" "$pb"
}

echo "# $(date -u +%FT%TZ) $(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) kernel $(uname -r) node $(node -v) DUR=$DUR LEN=$LEN" | tee -a "$WORK/results.txt"
REPS=${REPS:-1}
for rep in $(seq "$REPS"); do
for c in $CASES; do
  case $c in
    udp_iperf) run_udp_iperf ;;
    udp_node) for r in $RATES; do run_pair "udp_node@$r" "node $here/udp-node.mjs server 192.0.2.1 5302 $DUR" "node $here/udp-node.mjs client 192.0.2.1 5302 $DUR $LEN $r"; done ;;
    lib|lib+*) fix=${c#lib}; fix=${fix#+}
         for r in $RATES; do run_pair "$c@$r" "cd $root && FIX=$fix node $NODE_OPTS $here/lib-dgram.mjs server 192.0.2.1 5303 $WORK/cert.pem $WORK/key.pem $DUR" \
           "cd $root && FIX=$fix node $NODE_OPTS $here/lib-dgram.mjs client 192.0.2.1 5303 $hash $DUR $LEN $r"; done ;;
    quinn) for r in $RATES; do run_pair "quinn@$r" "$here/quinn-dgram/target/release/quinn-dgram server 192.0.2.1:5304 $WORK/cert.pem $WORK/key.pem $DUR" \
           "$here/quinn-dgram/target/release/quinn-dgram client 192.0.2.1:5304 $WORK/cert.pem $DUR $LEN $r"; done ;;
    ngtcp2) for r in $RATES; do run_pair "ngtcp2@$r" "$here/ngtcp2-dgram/ngtcp2-dgram server 192.0.2.1 5305 $WORK/cert.pem $WORK/key.pem $DUR" \
           "$here/ngtcp2-dgram/ngtcp2-dgram client 192.0.2.1 5305 $WORK/cert.pem $DUR $LEN $r"; done ;;
    ngtcp2_js) for r in $RATES; do run_pair "ngtcp2_js@$r" "cd $root && node $here/batch-sink.mjs $here/ngtcp2-dgram/ngtcp2-dgram 192.0.2.1 5309 $WORK/cert.pem $WORK/key.pem $DUR" \
           "$here/ngtcp2-dgram/ngtcp2-dgram client 192.0.2.1 5309 $WORK/cert.pem $DUR $LEN $r"; done ;;
    tun_ngtcp2) run_tun_ngtcp2 tun_ngtcp2 ;;
    tun_ngtcp2_gro) run_tun_ngtcp2 tun_ngtcp2_gro QGQ_TUN_VNET=1 ;;
    tun_ngtcp2_tso) run_tun_ngtcp2 tun_ngtcp2_tso QGQ_TUN_VNET=1 QGQ_TUN_TSO=1 ;;
    tun_wg) run_tun_wg ;;
    tun_qg_h3) run_tun_qg_h3 ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
done
done
