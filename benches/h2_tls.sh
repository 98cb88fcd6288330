#!/usr/bin/env bash
# HTTPS against nginx, in one run: HTTP/2 manifest hits, HTTPS/1.1 keep-alive
# hits, new TLS connections per second, and TLS session resumption.
#
# Both servers use the same ECDSA P-256 certificate (made here with openssl),
# serve the same 1,500-byte playlist from a warm cache (nginx `proxy_cache`,
# mediaedge its memory cache, both in front of one nginx origin on plain HTTP),
# run pinned to one core (SERVER_CPU) with one worker, and are loaded by
# h2load (and openssl s_time) pinned to the other core (CLIENT_CPU).
#
#   cargo build --release && bash benches/h2_tls.sh
#
# Rows:
# - h2 hits: `h2load -c32 -m16 -n HITS`, ALPN h2.
# - HTTPS/1.1 hits: `h2load --h1 -c32`, keep-alive, one request at a time.
# - new connections/s: h2load with as many clients as requests (`-c N -n N`),
#   so each connection does a full TLS 1.3 handshake (X25519 + ECDSA P-256)
#   and one h2 request; ROUNDS rounds of NEWCONNS, the rate is total
#   connections / total time. h2load resumes no sessions (checked with nginx's $ssl_session_reused).
# - s_time full / resumed: `openssl s_time -new` and `-reuse` (TLS 1.3): one
#   connection at a time, each doing a handshake and one HTTP/1.1 request; the
#   resumed row reuses the first connection's session (a ticket). This is
#   latency-bound (client and server take turns), so it shows what resumption
#   saves, not the server's peak rate.
#
# Each h2load row also gives the server's CPU time per request (user +
# system, from /proc/PID/stat, all threads): on a loaded machine the rates
# move with the neighbours, the CPU per request much less.
#
# Knobs: HITS (requests per hit row, default 200000), NEWCONNS (default 1000), ROUNDS (default 5),
# STIME (s per s_time run, default 5), SERVER_CPU (0), CLIENT_CPU (1),
# SIZE (playlist bytes, 1500), EDGE_BIN, PERF=1 to record
# `perf record -e cpu-clock --call-graph dwarf` of mediaedge during the h2
# and new-connection rows
# (written to $PERF_DIR, default ./target/h2_tls-perf).
set -euo pipefail
cd "$(dirname "$0")/.."

HITS=${HITS:-200000}
NEWCONNS=${NEWCONNS:-1000}
ROUNDS=${ROUNDS:-5}
STIME=${STIME:-5}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SIZE=${SIZE:-1500}
EDGE_BIN=${EDGE_BIN:-./target/release/mediaedge}
PERF=${PERF:-0}
PERF_DIR=${PERF_DIR:-./target/h2_tls-perf}

for tool in h2load nginx openssl curl taskset python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
[ -x "$EDGE_BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
EDGE_BIN=$(realpath "$EDGE_BIN")

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 300); do
        curl -sk -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

# The certificate: ECDSA P-256, for localhost and 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# A live-style media playlist of exactly SIZE bytes.
mkdir -p "$work/media/live"
python3 - "$SIZE" >"$work/media/live/index.m3u8" <<'PY'
import sys
size = int(sys.argv[1])
out = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:100\n"
i = 100
while len(out) + 40 < size:
    out += "#EXTINF:2.000,\nsegment_%06d.ts\n" % i
    i += 1
pad = size - len(out) - 2
out += "#" + "x" * max(pad, 0) + "\n"
sys.stdout.write(out[:size])
PY

ORIGIN_PORT=$(free_port)
NGINX_PORT=$(free_port)
EDGE_HTTP_PORT=$(free_port)
EDGE_PORT=$(free_port)
PATH_=/live/index.m3u8

# One nginx process: the origin (plain HTTP) and the nginx edge (HTTPS,
# proxy_cache, session cache and tickets on, as a production set-up has them).
mkdir -p "$work/nginx/cache" "$work/nginx/tmp"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 8192; }
worker_rlimit_nofile 20000;
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    keepalive_requests 10000000;
    proxy_cache_path $work/nginx/cache levels=1:2 keys_zone=edge:10m max_size=1g;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $work/media;
        location / { add_header Cache-Control "max-age=86400"; }
    }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl http2;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
        location / {
            proxy_pass http://127.0.0.1:$ORIGIN_PORT;
            proxy_cache edge;
            proxy_cache_valid 200 1d;
            proxy_http_version 1.1;
        }
    }
}
EOF
taskset -c "$SERVER_CPU" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)

cat >"$work/edge.toml" <<EOF
[server]
listen = "127.0.0.1:$EDGE_HTTP_PORT"
https_listen = "127.0.0.1:$EDGE_PORT"
certificates = [ { cert = "cert.pem", key = "key.pem", default = true } ]

[[distributions]]
id = "bench"
aliases = ["*"]

[[distributions.origins]]
id = "origin"
url = "http://127.0.0.1:$ORIGIN_PORT"

[distributions.default_behavior]
origin = "origin"
EOF
(cd "$work" && exec taskset -c "$SERVER_CPU" "$EDGE_BIN" serve --config edge.toml \
    --admin-listen off --state-dir "$work/state" >"$work/edge.log" 2>&1) &
EDGE_PID=$!
pids+=("$EDGE_PID")

NGINX_URL=https://127.0.0.1:$NGINX_PORT$PATH_
EDGE_URL=https://127.0.0.1:$EDGE_PORT$PATH_
wait_port "$NGINX_URL"
wait_port "$EDGE_URL"
# Warm both caches (and check both serve the same bytes over h2).
for url in "$NGINX_URL" "$EDGE_URL"; do
    for _ in 1 2 3; do curl -sk --http2 -o "$work/body" "$url"; done
    cmp -s "$work/body" "$work/media/live/index.m3u8" || { echo "$url does not serve the playlist" >&2; exit 1; }
done

client() { taskset -c "$CLIENT_CPU" "$@"; }

NGINX_PID=${pids[0]}
TICK=$(getconf CLK_TCK)
# CPU time (user + system, all threads) a server process has used, in ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Microseconds of server CPU per request, from a tick count and a request count.
cpu_us() { awk -v t="$1" -v n="$2" -v hz="$TICK" 'BEGIN { printf "%.1f", t * 1000000 / hz / n }'; }

# h2load's rate and the server's CPU per request (µs), failing when any
# request failed. The first argument is the server's pid.
h2rate() {
    local pid=$1 out t0
    shift
    t0=$(cpu_ticks "$pid")
    out=$(client h2load -t1 "$@" 2>&1)
    local ticks=$(($(cpu_ticks "$pid") - t0))
    local failed
    failed=$(awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($i == "failed,") print $(i - 1) }' <<<"$out")
    if [ "${failed:-1}" != 0 ]; then
        echo "h2load $*: failed requests" >&2
        echo "$out" >&2
        return 1
    fi
    local rate n
    rate=$(awk '/^finished in/ { gsub(",", "", $4); printf "%.0f", $4 }' <<<"$out")
    n=$(awk '/^requests:/ { print $2 }' <<<"$out")
    echo "$rate $(cpu_us "$ticks" "$n")"
}

# perf around one measurement of mediaedge, when PERF=1.
perf_start() {
    [ "$PERF" = 1 ] || return 0
    mkdir -p "$PERF_DIR"
    perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$EDGE_PID" -o "$PERF_DIR/$1.data" >/dev/null 2>&1 &
    PERF_PID=$!
    sleep 0.5
}
perf_stop() {
    [ "$PERF" = 1 ] || return 0
    kill -INT "$PERF_PID"
    wait "$PERF_PID" 2>/dev/null || true
}

h2_hits() { h2rate "$1" -c32 -m16 -n "$HITS" "$2"; }
h1_hits() { h2rate "$1" --h1 -c32 -m1 -n "$HITS" "$2"; }

# New connections: ROUNDS rounds of NEWCONNS one-request connections; prints
# the rate and the server's CPU per connection (µs).
new_conns() {
    local pid=$1 url=$2 total_s=0 r t t0
    t0=$(cpu_ticks "$pid")
    for r in $(seq 1 "$ROUNDS"); do
        local out
        out=$(client h2load -t1 -c "$NEWCONNS" -n "$NEWCONNS" -m1 "$url" 2>&1)
        grep -q "succeeded, 0 failed" <<<"$out" || { echo "new connections: failures" >&2; echo "$out" >&2; return 1; }
        t=$(awk '/^finished in/ { s = $3; sub(",$", "", s); if (s ~ /ms$/) { sub("ms$", "", s); s /= 1000 } else { sub("s$", "", s) } print s }' <<<"$out")
        total_s=$(awk -v a="$total_s" -v b="$t" 'BEGIN { print a + b }')
    done
    local ticks=$(($(cpu_ticks "$pid") - t0))
    awk -v n="$((NEWCONNS * ROUNDS))" -v s="$total_s" 'BEGIN { printf "%.0f ", n / s }'
    cpu_us "$ticks" "$((NEWCONNS * ROUNDS))"
    echo
}

# openssl s_time: connections per wall-clock second, full handshakes (-new)
# or resumed (-reuse: s_time prints "r" for each connection that resumed, "*"
# for each full one); prints "rate resumed-count".
stime() {
    local port=$1 mode=$2 t0 t1 out
    t0=$(date +%s.%N)
    out=$(client openssl s_time -connect "127.0.0.1:$port" -www "$PATH_" -time "$STIME" "$mode" 2>/dev/null)
    t1=$(date +%s.%N)
    local n r
    n=$(awk '/connections in [0-9.]+s;/ { print $1; exit }' <<<"$out")
    r=$(tr -cd 'r' <<<"$(grep -E '^[r*]+$' <<<"$out")" | wc -c)
    awk -v n="${n:-0}" -v a="$t0" -v b="$t1" -v r="$r" 'BEGIN { printf "%.0f %d\n", n / (b - a), r }'
}

declare -A R C
echo "h2 hits..." >&2
read -r R[nginx_h2] C[nginx_h2] < <(h2_hits "$NGINX_PID" "$NGINX_URL")
perf_start h2_hits
read -r R[edge_h2] C[edge_h2] < <(h2_hits "$EDGE_PID" "$EDGE_URL")
perf_stop
echo "HTTPS/1.1 hits..." >&2
read -r R[nginx_h1] C[nginx_h1] < <(h1_hits "$NGINX_PID" "$NGINX_URL")
read -r R[edge_h1] C[edge_h1] < <(h1_hits "$EDGE_PID" "$EDGE_URL")
echo "new connections..." >&2
read -r R[nginx_new] C[nginx_new] < <(new_conns "$NGINX_PID" "$NGINX_URL")
perf_start new_conns
read -r R[edge_new] C[edge_new] < <(new_conns "$EDGE_PID" "$EDGE_URL")
perf_stop
echo "s_time..." >&2
read -r R[nginx_full] _ < <(stime "$NGINX_PORT" -new)
read -r R[edge_full] _ < <(stime "$EDGE_PORT" -new)
read -r R[nginx_reuse] R[nginx_reused] < <(stime "$NGINX_PORT" -reuse)
read -r R[edge_reuse] R[edge_reused] < <(stime "$EDGE_PORT" -reuse)

# Whether the resumed runs really resumed: one s_time -reuse connection pair,
# checked with s_client's own report.
resumed() {
    local port=$1 sess="$work/sess-$1"
    printf 'GET / HTTP/1.0\r\n\r\n' | client openssl s_client -connect "127.0.0.1:$port" -tls1_3 \
        -sess_out "$sess" -quiet >/dev/null 2>&1 || true
    printf 'GET / HTTP/1.0\r\n\r\n' | client openssl s_client -connect "127.0.0.1:$port" -tls1_3 \
        -sess_in "$sess" 2>/dev/null | grep -q '^Reused, ' && echo yes || echo no
}
R[nginx_resumes]=$(resumed "$NGINX_PORT")
R[edge_resumes]=$(resumed "$EDGE_PORT")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }'; }
row() {
    local cpu="| | |"
    if [ -n "${C[nginx_$2]:-}" ]; then
        cpu="| ${C[nginx_$2]} / ${C[edge_$2]} | $(ratio "${C[nginx_$2]}" "${C[edge_$2]}") |"
    fi
    echo "| $1 | ${R[nginx_$2]} | ${R[edge_$2]} | $(ratio "${R[edge_$2]}" "${R[nginx_$2]}") $cpu"
}

echo
echo "| measure (one run, server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU) | nginx | mediaedge | mediaedge / nginx | server CPU µs per request, nginx / mediaedge | nginx CPU / mediaedge CPU |"
echo "|---|---:|---:|---:|---:|---:|"
row "h2 ${SIZE}-byte playlist hits, h2load -c32 -m16 (req/s)" h2
row "HTTPS/1.1 keep-alive hits, h2load --h1 -c32 (req/s)" h1
row "new TLS 1.3 connections, one h2 request each, $NEWCONNS at once × $ROUNDS (conn/s)" new
row "openssl s_time -new, sequential full handshakes (conn/s)" full
row "openssl s_time -reuse, sequential resumed handshakes (conn/s)" reuse
echo "| connections resumed in the s_time -reuse run | ${R[nginx_reused]} | ${R[edge_reused]} | | | |"
echo "| a second connection resumes the first's session (s_client, TLS 1.3) | ${R[nginx_resumes]} | ${R[edge_resumes]} | | | |"
