#!/usr/bin/env bash
# bench/compare.sh - quicgate measured against the VPNs an operator would pick instead, on one machine, in one
# run: direct veth (no VPN), the newest wireguard-go (the yardstick: ../shared/tools/bin/wireguard-go-modern,
# 0.0.20250522 with TUN TSO/GRO and UDP GSO/GRO), optionally Debian's wireguard-go (0.0.20220316, no offloads),
# OpenVPN over UDP, OpenVPN over TCP, quicgate over HTTP/2 and (when the optional native module is installed)
# quicgate over HTTP/3.
#
# Usage (as root, from anywhere; uses the built bin/quicgate.js - run `npm run build` first):
#   bench/compare.sh
#   REPS=5 DUR=10 MAX_TIME=1800 bench/compare.sh
#   PHASES="wg qg_h2" bench/compare.sh          # a subset (ratios only against what ran)
#
# Knobs (env): REPS (runs per figure, median reported; 3), DUR (s per iperf3 run; 5), PINGS (idle pings; 20),
#   PING_IVL (0.2), MAX_TIME (watchdog from script start; 900 s), PHASES (direct wg ovpn_udp ovpn_tcp qg_quic qg_h2 qg_h3),
#   WORK (/tmp/qgb-compare; wiped at start), UDP_LEN (iperf3 UDP payload; 1300), SUITE (which figures:
#   "tcp_up tcp_down tcp_p4 udp ping"), QG_NODE_OPTS (extra node flags for both quicgate processes, e.g.
#   "--cpu-prof --cpu-prof-dir=/tmp/qgb-prof"; see bench/cpuprofile-top.mjs), QG_OFFLOAD (true/false: TUN write
#   coalescing, for A/B runs), PINGS_FAST (pings at 2 ms intervals; 1000).
#
# Per VPN it measures: iperf3 TCP one stream client->server (tcp_up) and server->client (tcp_down, -R), TCP with
# 4 streams (tcp_p4), UDP unlimited-rate (-u -b 0: received rate and loss), ping RTT idle (every PING_IVL s),
# at 500/s (ping_fast: no wake-up of idle processes per ping) and while a TCP stream runs (medians), and the CPU seconds the VPN's own processes (both ends) used per GB carried, from
# /proc/<pid>/stat utime+stime before/after each iperf3 run.
#
# Output: '#' lines are information; "vpn.metric: value unit (details)" lines per figure; at the end a table of
# medians and the ratios quicgate / each other VPN. Raw per-run values: $WORK/raw.tsv.
#
# Everything lives in namespaces qgb-srv / qgb-cli joined by a veth (192.0.2.1 / 192.0.2.2); tunnels use
# 198.18.0.1 (server side) / 198.18.0.x (client side). Nothing is configured in the host's namespace. The
# namespaces (and with them veth and TUNs) and every process started in them are removed on exit, also on
# failure or when the watchdog fires.
set -Eeuo pipefail

REPS=${REPS:-3}
DUR=${DUR:-5}
PINGS=${PINGS:-20}
PING_IVL=${PING_IVL:-0.2}
PINGS_FAST=${PINGS_FAST:-1000}      # pings at 2 ms intervals (ping_fast)
QG_OFFLOAD=${QG_OFFLOAD:-true}      # quicgate's TUN write coalescing (tunnel.offload / tun_offload), for A/B runs
MAX_TIME=${MAX_TIME:-900}
UDP_LEN=${UDP_LEN:-1300}
QG_NODE_OPTS=${QG_NODE_OPTS:-}      # extra node flags for both quicgate processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/qgb-prof"
SUITE=${SUITE:-"tcp_up tcp_down tcp_p4 udp ping"}
WORK=${WORK:-/tmp/qgb-compare}
PHASES=${PHASES:-"direct wg ovpn_udp ovpn_tcp qg_quic qg_h2 qg_h3"}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The yardstick: the newest wireguard-go (static build shipped beside the repository in ../shared).
WG_MODERN=${WG_MODERN:-$ROOT/../shared/tools/bin/wireguard-go-modern}
declare -A LABEL=([direct]="direct veth" [ovpn_udp]="OpenVPN over UDP" [ovpn_tcp]="OpenVPN over TCP"
                  [qg_quic]="quicgate over its own QUIC (ngtcp2)" [qg_h2]="quicgate over HTTP/2" [qg_h3]="quicgate over HTTP/3")
NS_S=qgb-srv NS_C=qgb-cli
VETH_S=qgb-vs VETH_C=qgb-vc
OUT_S=192.0.2.1 OUT_C=192.0.2.2
IN_S=198.18.0.1 IN_C=198.18.0.2
WG_PORT=51820 OV_PORT=1194 QG_PORT=4433 IPERF_PORT=5201
WG_RUN=/var/run/wireguard
LOCK=/tmp/qgb-compare.lock
HZ=$(getconf CLK_TCK)
T0=$SECONDS
WD_PID="" IPERF_PID="" PHASE_PID=""
DAEMONS=()
declare -A RES=()          # RES[phase.metric]=median
declare -A UNIT=()
RAN=()

info() { printf '# %s\n' "$*"; }
die()  { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }
ns_exists() { [[ -e /run/netns/$1 ]]; }

# ------------------------------------------------------------- cleanup ----
ns_pids() { local ns; for ns in "$NS_S" "$NS_C"; do ns_exists "$ns" && ip netns pids "$ns" 2>/dev/null; done; true; }

kill_ns_procs() {          # every process in our namespaces (only we put processes there), TERM then KILL
    local pids i
    for i in $(seq 30); do
        pids=$(ns_pids | tr '\n' ' ')
        [[ -z ${pids// /} ]] && break
        (( i == 1 )) && kill -TERM $pids 2>/dev/null
        (( i == 30 )) && { kill -KILL $pids 2>/dev/null; sleep 0.2; }
        sleep 0.1
    done
    rm -f "$WG_RUN/qgb-wg-s.sock" "$WG_RUN/qgb-wg-c.sock"
    IPERF_PID="" DAEMONS=()
}

cleanup() {
    local rc=$?
    trap - EXIT ERR
    trap '' INT TERM
    set +e
    if [[ -n $WD_PID ]]; then
        local kids; kids=$(cat "/proc/$WD_PID/task/$WD_PID/children" 2>/dev/null)
        kill "$WD_PID" $kids 2>/dev/null
    fi
    [[ -n $PHASE_PID ]] && kill -KILL "$PHASE_PID" 2>/dev/null
    kill_ns_procs
    local ns
    for ns in "$NS_S" "$NS_C"; do ns_exists "$ns" && ip netns del "$ns"; done
    rm -f "$WORK"/wg/*.key "$WORK"/ovpn/*.key 2>/dev/null
    if ns_exists "$NS_S" || ns_exists "$NS_C"; then info "cleanup: namespaces LEFT OVER"; else info "cleanup: ok"; fi
    info "elapsed $((SECONDS - T0)) s, exit status $rc"
    exit "$rc"
}

# --------------------------------------------------------------- setup ----
install_pkgs() {
    local need=() c
    local cmds=(iperf3:iperf3 jq:jq ping:iputils-ping openssl:openssl ip:iproute2 flock:util-linux)
    [[ " $PHASES " == *" wg"* ]] && cmds+=(wg:wireguard-tools)
    [[ " $PHASES " == *" wg2022 "* ]] && cmds+=(wireguard-go:wireguard-go)
    [[ " $PHASES " == *" ovpn_"* ]] && cmds+=(openvpn:openvpn)
    for c in "${cmds[@]}"; do
        command -v "${c%%:*}" >/dev/null 2>&1 || need+=("${c#*:}")
    done
    (( ${#need[@]} )) || return 0
    info "installing missing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(timeout 300 apt-get -o DPkg::Lock::Timeout=240)   # other apt users on a shared machine: wait
    { "${apt[@]}" install -y --no-install-recommends "${need[@]}" ||
      { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${need[@]}"; }; } \
        >"$WORK/apt.log" 2>&1 || die "apt-get install failed, see $WORK/apt.log"
}

start_watchdog() {
    ( sleep "$MAX_TIME"
      echo "compare.sh: watchdog: MAX_TIME=${MAX_TIME}s reached, aborting" >&2
      kill -TERM $$ ) 9>&- &
    WD_PID=$!
}

wait_for() {   # desc timeout cmd...
    local desc=$1 end=$((SECONDS + $2)); shift 2
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < end )) || { echo "compare.sh: timeout waiting for $desc" >&2; return 1; }
        sleep 0.1
    done
}

ns_bg() {      # ns log cmd...  -> BG_PID
    local ns=$1 log=$2; shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 9>&- &
    BG_PID=$!
}

setup_netns() {
    local ns
    for ns in "$NS_S" "$NS_C"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip -n "$NS_S" link add "$VETH_S" type veth peer name "$VETH_C" netns "$NS_C"
    ip -n "$NS_S" addr add "$OUT_S/24" dev "$VETH_S"
    ip -n "$NS_C" addr add "$OUT_C/24" dev "$VETH_C"
    ip -n "$NS_S" link set "$VETH_S" up
    ip -n "$NS_C" link set "$VETH_C" up
    wait_for veth 5 ip netns exec "$NS_C" ping -n -q -c1 -W1 "$OUT_S"
}

# --------------------------------------------------------- measurement ----
ticks() { local s=0 p t; for p in "$@"; do
    t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0); s=$((s + ${t:-0})); done; echo "$s"; }

median() {     # values... -> median (NA skipped)
    printf '%s\n' "$@" | awk '$1 != "NA" && $1 != "" {print $1}' | sort -g |
        awk '{a[NR]=$1} END {if (NR == 0) print "NA"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}
minmax() { printf '%s\n' "$@" | awk '$1 != "NA" && $1 != "" {print $1}' | sort -g | awk 'NR==1{mn=$1} {mx=$1} END{if (NR) printf "%.1f..%.1f", mn, mx; else printf "NA"}'; }
fmt() { [[ $1 == NA ]] && echo NA || LC_ALL=C printf "%.${2:-1}f" "$1"; }

record() {     # phase metric value unit details
    RES[$1.$2]=$3; UNIT[$2]=$4
    printf '%s.%s: %s %s%s\n' "$1" "$2" "$(fmt "$3" 2)" "$4" "${5:+ ($5)}" | tee -a "$WORK/summary.txt"
}

start_iperf_server() {
    [[ -n $IPERF_PID ]] && { kill "$IPERF_PID" 2>/dev/null || true; sleep 0.2; }
    ns_bg "$NS_S" "$WORK/iperf3-s.log" iperf3 -s -B "$1" -p "$IPERF_PORT"
    IPERF_PID=$BG_PID IPERF_ADDR=$1
    wait_for "iperf3 server" 5 sh -c "ip netns exec $NS_S ss -Hltn 'sport = :$IPERF_PORT' | grep -q ."
}

# one iperf3 run: sets MBPS LOSS CPU_GB (VPN CPU seconds per GB received)
iperf_run() {  # tag args...
    local tag=$1; shift
    local json="$WORK/json/$tag.json" c0 c1
    c0=$(ticks "${DAEMONS[@]}")
    ip netns exec "$NS_C" timeout -k 2 $((DUR + 20)) iperf3 -c "$IPERF_ADDR" -p "$IPERF_PORT" -t "$DUR" -J "$@" \
        >"$json" 2>>"$WORK/iperf3-c.err" 9>&- || true
    c1=$(ticks "${DAEMONS[@]}")
    if jq -e '.end.sum_received.bits_per_second' "$json" >/dev/null 2>&1; then
        MBPS=$(jq -r '.end.sum_received.bits_per_second / 1e6' "$json")
        LOSS=$(jq -r '.end.sum_received.lost_percent // .end.sum.lost_percent // "NA"' "$json")
        local bytes; bytes=$(jq -r '.end.sum_received.bytes' "$json")
        if (( ${#DAEMONS[@]} )) && [[ $bytes != 0 ]]; then
            CPU_GB=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v b="$bytes" 'BEGIN{printf "%.3f", d / hz / (b / 1e9)}')
        else CPU_GB=NA; fi
    else
        MBPS=NA LOSS=NA CPU_GB=NA
        echo "compare.sh: iperf3 $tag failed; restarting the iperf3 server" >&2
        start_iperf_server "$IPERF_ADDR"
    fi
    printf '%s\t%s\t%s\t%s\n' "$tag" "$MBPS" "$LOSS" "$CPU_GB" >>"$WORK/raw.tsv"
}

bench_iperf() { # phase metric args...
    local ph=$1 m=$2 i rates=() losses=() cpus=(); shift 2
    for ((i = 1; i <= REPS; i++)); do
        iperf_run "$ph.$m.$i" "$@"
        rates+=("$MBPS"); losses+=("$LOSS"); cpus+=("$CPU_GB")
    done
    record "$ph" "$m" "$(median "${rates[@]}")" Mbit/s "receiver, n=$REPS, range $(minmax "${rates[@]}")"
    [[ $m == udp ]] && record "$ph" udp_loss "$(median "${losses[@]}")" % "range $(minmax "${losses[@]}")"
    (( ${#DAEMONS[@]} )) && record "$ph" "${m}_cpu" "$(median "${cpus[@]}")" s/GB "VPN processes, both ends"
    return 0
}

ping_rtts() {  # file -> median RTT of the replies in it
    median $(sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' "$1")
}

bench_ping() { # phase
    local ph=$1 f="$WORK/$1.ping-idle.txt" g="$WORK/$1.ping-load.txt" n
    ip netns exec "$NS_C" timeout 120 ping -n -c "$PINGS" -i "$PING_IVL" "$IPERF_ADDR" >"$f" 2>&1 9>&- || true
    record "$ph" ping_idle "$(ping_rtts "$f")" ms "median of $PINGS, $(grep -o '[0-9.]*% packet loss' "$f" || echo 'no summary')"
    # the same at 500 pings/s: without the cost of waking idle processes (and vCPUs) for every ping
    ip netns exec "$NS_C" timeout 120 ping -n -c "$PINGS_FAST" -i 0.002 "$IPERF_ADDR" >"$WORK/$ph.ping-fast.txt" 2>&1 9>&- || true
    record "$ph" ping_fast "$(ping_rtts "$WORK/$ph.ping-fast.txt")" ms "median of $PINGS_FAST at 2 ms intervals, $(grep -o '[0-9.]*% packet loss' "$WORK/$ph.ping-fast.txt" || echo 'no summary')"
    # under load: one TCP stream client->server for DUR s, pings during it
    n=$(awk -v d="$DUR" -v i="$PING_IVL" 'BEGIN{n = int((d - 1) / i); print (n < 3 ? 3 : n)}')
    ip netns exec "$NS_C" timeout -k 2 $((DUR + 20)) iperf3 -c "$IPERF_ADDR" -p "$IPERF_PORT" -t "$DUR" \
        >"$WORK/$ph.ping-load.iperf" 2>&1 9>&- &
    local ip=$!
    sleep 0.5
    ip netns exec "$NS_C" timeout 120 ping -n -c "$n" -i "$PING_IVL" "$IPERF_ADDR" >"$g" 2>&1 9>&- || true
    wait "$ip" || true
    record "$ph" ping_load "$(ping_rtts "$g")" ms "median of $n during a TCP stream up, $(grep -o '[0-9.]*% packet loss' "$g" || echo 'no summary')"
}

suite() {      # phase
    local ph=$1
    local t
    for t in $SUITE; do
        case $t in
            tcp_up)   bench_iperf "$ph" tcp_up ;;
            tcp_down) bench_iperf "$ph" tcp_down -R ;;
            tcp_p4)   bench_iperf "$ph" tcp_p4 -P 4 ;;
            udp)      bench_iperf "$ph" udp -u -b 0 -l "$UDP_LEN" ;;
            ping)     bench_ping "$ph" ;;
            *)        die "unknown SUITE item $t" ;;
        esac
    done
}

mtu_of() { ip -n "$1" -o link show dev "$2" | sed -n 's/.* mtu \([0-9]*\).*/\1/p'; }

# ---------------------------------------------------------------- VPNs ----
wg_version() { "$1" --version 2>&1 | awk 'NR==1{sub(/^v/, "", $2); print $2; exit}'; }

wg_up() {      # wireguard-go binary
    local bin=$1 d="$WORK/wg"; mkdir -p "$d"
    ( umask 077; wg genkey >"$d/s.key"; wg genkey >"$d/c.key" )
    ns_bg "$NS_S" "$d/s.log" env WG_PROCESS_FOREGROUND=1 "$bin" -f qgb-wg-s; local ps=$BG_PID
    ns_bg "$NS_C" "$d/c.log" env WG_PROCESS_FOREGROUND=1 "$bin" -f qgb-wg-c; local pc=$BG_PID
    DAEMONS=("$ps" "$pc")
    wait_for "wireguard-go UAPI sockets" 10 test -S "$WG_RUN/qgb-wg-s.sock" -a -S "$WG_RUN/qgb-wg-c.sock"
    ip netns exec "$NS_S" wg set qgb-wg-s private-key "$d/s.key" listen-port "$WG_PORT" \
        peer "$(wg pubkey <"$d/c.key")" allowed-ips "$IN_C/32" endpoint "$OUT_C:$WG_PORT"
    ip netns exec "$NS_C" wg set qgb-wg-c private-key "$d/c.key" listen-port "$WG_PORT" \
        peer "$(wg pubkey <"$d/s.key")" allowed-ips "$IN_S/32" endpoint "$OUT_S:$WG_PORT"
    ip -n "$NS_S" addr add "$IN_S/24" dev qgb-wg-s; ip -n "$NS_S" link set qgb-wg-s up
    ip -n "$NS_C" addr add "$IN_C/24" dev qgb-wg-c; ip -n "$NS_C" link set qgb-wg-c up
    wait_for "wireguard tunnel" 15 ip netns exec "$NS_C" ping -n -q -c1 -W1 "$IN_S"
    info "wireguard-go $(wg_version "$bin") ($bin), MTU $(mtu_of "$NS_C" qgb-wg-c)"
}

ovpn_up() {    # udp|tcp
    local proto=$1 d="$WORK/ovpn" n
    mkdir -p "$d"
    for n in s c; do
        [[ -s $d/$n.key ]] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$d/$n.key" -out "$d/$n.crt" -days 2 -subj "/CN=qgb-ovpn-$n" 2>/dev/null
    done
    local fs fc
    fs=$(openssl x509 -in "$d/s.crt" -noout -fingerprint -sha256 | cut -d= -f2)
    fc=$(openssl x509 -in "$d/c.crt" -noout -fingerprint -sha256 | cut -d= -f2)
    # OpenVPN 2.6 peer-fingerprint mode (no CA), AES-256-GCM data channel, userspace (no DCO kernel module)
    local common=(--dev-type tun --data-ciphers AES-256-GCM --disable-dco --verb 3 --connect-retry 1 1)
    local srv=(openvpn --dev qgb-ov-s --ifconfig "$IN_S" "$IN_C" --tls-server --dh none
               --cert "$d/s.crt" --key "$d/s.key" --peer-fingerprint "$fc" "${common[@]}")
    local cli=(openvpn --dev qgb-ov-c --ifconfig "$IN_C" "$IN_S" --tls-client
               --cert "$d/c.crt" --key "$d/c.key" --peer-fingerprint "$fs" "${common[@]}")
    if [[ $proto == udp ]]; then
        srv+=(--proto udp --local "$OUT_S" --lport "$OV_PORT" --remote "$OUT_C" "$OV_PORT")
        cli+=(--proto udp --local "$OUT_C" --lport "$OV_PORT" --remote "$OUT_S" "$OV_PORT")
    else
        srv+=(--proto tcp-server --local "$OUT_S" --lport "$OV_PORT")
        cli+=(--proto tcp-client --remote "$OUT_S" "$OV_PORT" --nobind)
    fi
    ns_bg "$NS_S" "$d/s-$proto.log" "${srv[@]}"; local ps=$BG_PID
    [[ $proto == tcp ]] && wait_for "openvpn listener" 10 sh -c "ip netns exec $NS_S ss -Hltn 'sport = :$OV_PORT' | grep -q ."
    ns_bg "$NS_C" "$d/c-$proto.log" "${cli[@]}"; local pc=$BG_PID
    DAEMONS=("$ps" "$pc")
    wait_for "openvpn $proto init" 20 sh -c "grep -q 'Initialization Sequence Completed' '$d/s-$proto.log' &&
                                             grep -q 'Initialization Sequence Completed' '$d/c-$proto.log'"
    wait_for "openvpn tunnel" 10 ip netns exec "$NS_C" ping -n -q -c1 -W1 "$IN_S"
    info "openvpn $(openvpn --version | awk 'NR==1{print $2}') over $proto, AES-256-GCM, userspace, MTU $(mtu_of "$NS_C" qgb-ov-c)"
}

h3_installed() { (cd "$ROOT" && node -e "import('@fails-components/webtransport-transport-http3-quiche').then(()=>process.exit(0),()=>process.exit(1))") 2>/dev/null; }

qg_up() {      # quic|h2|h3
    local kind=$1 d="$WORK/qg-$1"
    mkdir -p "$d"
    [[ -f $ROOT/dist/cli/main.js || -f $ROOT/bin/quicgate.js ]] || die "build quicgate first (npm run build)"
    local hash
    hash=$(cd "$ROOT" && node --input-type=module -e "
        const { hashPassword } = await import('$ROOT/dist/config/password.js');
        process.stdout.write(await hashPassword('bench-pw', { ln: 10, r: 8, p: 1 }));")
    printf 'users:\n  - name: bench\n    password_hash: "%s"\n    bandwidth: unlimited\n' "$hash" >"$d/users.yaml"
    local h2=true h3=off quic=off
    [[ $kind == h3 ]] && h3=auto
    [[ $kind == quic ]] && quic=auto
    cat >"$d/server.yaml" <<EOF
listen: { address: $OUT_S, port: $QG_PORT }
transports: { h2: $h2, h3: $h3, quic: $quic }
tunnel:
  offload: $QG_OFFLOAD
  ipv4: { network: 198.18.0.0/15, gateway: $IN_S }
  ipv6: null
log_level: info
users_file: $d/users.yaml
data_dir: $d/data
EOF
    ns_bg "$NS_S" "$d/server.log" node $QG_NODE_OPTS "$ROOT/bin/quicgate.js" server --config "$d/server.yaml"; local ps=$BG_PID
    wait_for "quicgate gateway up" 20 grep -q '"gateway up"' "$d/server.log"
    cat >"$d/client.yaml" <<EOF
server: https://$OUT_S:$QG_PORT/
user: bench
password: bench-pw
transport: $kind
ca_file: $d/data/ca.pem
tun_name: qgb-qc
tun_offload: $QG_OFFLOAD
EOF
    ns_bg "$NS_C" "$d/client.log" node $QG_NODE_OPTS "$ROOT/bin/quicgate.js" client --config "$d/client.yaml"; local pc=$BG_PID
    DAEMONS=("$ps" "$pc")
    wait_for "quicgate tunnel up" 20 grep -q '"tunnel up"' "$d/client.log"
    wait_for "quicgate tunnel" 10 ip netns exec "$NS_C" ping -n -q -c1 -W1 "$IN_S"
    info "quicgate over $kind, node $(node -v), MTU $(mtu_of "$NS_C" qgb-qc)"
}

# -------------------------------------------------------------- phases ----
phase_direct()   { start_iperf_server "$OUT_S"; info "direct veth, MTU $(mtu_of "$NS_C" "$VETH_C")"; suite direct; }
phase_wg()       { wg_up "$WG_MODERN"; start_iperf_server "$IN_S"; suite wg; }
phase_wg2022()   { wg_up "$(command -v wireguard-go)"; start_iperf_server "$IN_S"; suite wg2022; }
phase_ovpn_udp() { ovpn_up udp;  start_iperf_server "$IN_S"; suite ovpn_udp; }
phase_ovpn_tcp() { ovpn_up tcp;  start_iperf_server "$IN_S"; suite ovpn_tcp; }
phase_qg_h2()    { qg_up h2;     start_iperf_server "$IN_S"; suite qg_h2; }
phase_qg_quic()  { qg_up quic;   start_iperf_server "$IN_S"; suite qg_quic; }
phase_qg_h3()    {
    if ! h3_installed; then
        info "quicgate over HTTP/3: not installed (@fails-components/webtransport-transport-http3-quiche); skipped"
        printf 'qg_h3: not installed\n' | tee -a "$WORK/summary.txt"
        return 0
    fi
    qg_up h3; start_iperf_server "$IN_S"; suite qg_h3
}

report() {
    local metrics=(tcp_up tcp_down tcp_p4 udp udp_loss ping_idle ping_fast ping_load tcp_up_cpu tcp_down_cpu tcp_p4_cpu udp_cpu)
    local m ph q o
    echo
    echo "== phases =="
    for ph in "${RAN[@]}"; do printf '%-9s %s\n' "$ph" "${LABEL[$ph]:-$ph}"; done
    echo
    echo "== medians (throughput: higher is better; ping, loss, CPU: lower is better) =="
    printf '%-13s' metric; for ph in "${RAN[@]}"; do printf '%12s' "$ph"; done; printf '  unit\n'
    for m in "${metrics[@]}"; do
        printf '%-13s' "$m"; for ph in "${RAN[@]}"; do printf '%12s' "$(fmt "${RES[$ph.$m]:-NA}" 2)"; done
        printf '  %s\n' "${UNIT[$m]:-}"
    done
    for q in qg_quic qg_h2 qg_h3; do
        [[ -n ${RES[$q.tcp_up]:-} ]] || continue
        echo
        echo "== ratios $q / other (throughput > 1: quicgate faster; ping, CPU < 1: quicgate better) =="
        printf '%-13s' metric
        for o in "${RAN[@]}"; do [[ $o == qg_* ]] || printf '%22s' "$q / $o"; done; echo
        for m in "${metrics[@]}"; do
            [[ $m == udp_loss ]] && continue
            printf '%-13s' "$m"
            for o in "${RAN[@]}"; do
                [[ $o == qg_* ]] && continue
                printf '%22s' "$(awk -v a="${RES[$q.$m]:-NA}" -v b="${RES[$o.$m]:-NA}" \
                    'BEGIN{ if (a == "NA" || b == "NA" || b + 0 == 0) print "-"; else printf "%.2f", a / b }')"
            done
            echo
        done
    done
}

main() {
    [[ $EUID -eq 0 ]] || die "must run as root (network namespaces, TUN)"
    [[ $WORK == /tmp/qgb-* ]] || die "WORK must be /tmp/qgb-<name> (it is wiped)"
    if [[ " $PHASES " == *" wg "* ]]; then
        [[ -x $WG_MODERN ]] || die "the newest wireguard-go is missing: $WG_MODERN (set WG_MODERN, or drop wg from PHASES)"
        WG_MODERN=$(cd "$(dirname "$WG_MODERN")" && pwd)/$(basename "$WG_MODERN")
        LABEL[wg]="wireguard-go $(wg_version "$WG_MODERN") (the newest; $WG_MODERN)"
    fi
    exec 9>"$LOCK"
    flock -n 9 || die "another compare.sh holds $LOCK"
    rm -rf "$WORK"; mkdir -p "$WORK/json"
    printf 'tag\tmbps\tloss_pct\tcpu_s_per_gb\n' >"$WORK/raw.tsv"
    : >"$WORK/summary.txt"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start_watchdog
    install_pkgs
    [[ " $PHASES " == *" wg2022 "* ]] &&
        LABEL[wg2022]="wireguard-go $(wg_version "$(command -v wireguard-go)") (Debian's 2022 build, no offloads)"
    local ns; for ns in "$NS_S" "$NS_C"; do ns_exists "$ns" && { kill_ns_procs; ip netns del "$ns"; }; done
    info "machine: $(nproc) vCPU, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r), node $(node -v), iperf3 $(iperf3 --version | awk 'NR==1{print $2}')"
    info "REPS=$REPS DUR=${DUR}s PINGS=$PINGS MAX_TIME=${MAX_TIME}s phases: $PHASES"
    setup_netns
    local ph
    for ph in $PHASES; do
        declare -F "phase_$ph" >/dev/null || die "unknown phase $ph"
        ( trap - EXIT ERR INT TERM; "phase_$ph" ) 9>&- &
        PHASE_PID=$!
        if ! wait "$PHASE_PID"; then
            printf '%s: FAILED (logs in %s)\n' "$ph" "$WORK" | tee -a "$WORK/summary.txt"
        fi
        PHASE_PID=""
        kill_ns_procs
        sleep 0.3
    done
    # The subshells' results are lost: re-read them from summary.txt.
    local line key val
    while IFS= read -r line; do
        [[ $line =~ ^([a-z0-9_]+)\.([a-z0-9_]+):\ ([^ ]+)\ ([^ ]+) ]] || continue
        key=${BASH_REMATCH[1]}.${BASH_REMATCH[2]}; val=${BASH_REMATCH[3]}
        RES[$key]=$val; UNIT[${BASH_REMATCH[2]}]=${BASH_REMATCH[4]}
        [[ " ${RAN[*]} " == *" ${BASH_REMATCH[1]} "* ]] || RAN+=("${BASH_REMATCH[1]}")
    done <"$WORK/summary.txt"
    report | tee -a "$WORK/summary.txt"
    info "raw per-run values: $WORK/raw.tsv; logs and iperf3 JSON: $WORK"
}

main "$@"
