#!/usr/bin/env bash
# Instructions per cached manifest hit, counted with callgrind (deterministic,
# unlike timings on a shared machine), for mediaedge and nginx proxy_cache in
# the same run.
#
# Each server runs under callgrind twice: once for a short wrk run and once
# for a long one, both after the same warm-up. The difference in instructions
# divided by the difference in requests is the cost of one hit, with start-up,
# warm-up and shutdown cancelled out.
#
# By default the two runs are of a fixed number of requests (REQUESTS_SHORT,
# REQUESTS_LONG, sent one after another on one keep-alive connection by one
# curl process), so that a loaded machine changes only how long they take,
# not what is counted. MODE=time runs
# wrk for SHORT and LONG seconds instead (the 3 s / 9 s method); on a busy
# machine the two runs may then serve nearly as many requests, and the idle
# time between them is counted as if it were requests.
#
#   cargo build --release && bash benches/hit_instructions.sh
#
# Knobs: MODE (count or time), REQUESTS_SHORT / REQUESTS_LONG (default 1000
# and 4000), SHORT / LONG (seconds for MODE=time, default 3 and 9), CONNS
# (MODE=time only, default 1: one keep-alive connection, so the figure is per
# request, not per connection), SIZE (playlist bytes, default 1500), NGINX=0 to skip nginx,
# KEEP=DIR to keep the callgrind files (`callgrind_annotate DIR/<file>`),
# POLICY=listed or POLICY=any to give the edge's behavior a response headers
# policy (security headers, a removed header, CORS for a listed origin that
# every request then names in `Origin`, or for any origin; see
# docs/response-headers.md).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-count}
SHORT=${SHORT:-3}
LONG=${LONG:-9}
REQUESTS_SHORT=${REQUESTS_SHORT:-1000}
REQUESTS_LONG=${REQUESTS_LONG:-4000}
CONNS=${CONNS:-1}
SIZE=${SIZE:-1500}
EDGE_BIN=${EDGE_BIN:-./target/release/mediaedge}

for tool in valgrind wrk curl; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y $tool)" >&2; exit 2; }
done
[ -x "$EDGE_BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then
        mkdir -p "$KEEP"
        cp "$work"/*.callgrind "$KEEP"/ 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A media playlist of exactly SIZE bytes. It is a complete (VOD) one, so that
# it stays fresh for the whole run and every request counted is a hit; a live
# one would be revalidated about once a second.
mkdir -p "$work/media/live"
python3 - "$SIZE" >"$work/media/live/index.m3u8" <<'PY'
import sys
size = int(sys.argv[1])
out = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:100\n"
i = 100
while len(out) + 40 < size:
    out += "#EXTINF:2.000,\nsegment_%06d.ts\n" % i
    i += 1
end = "#EXT-X-ENDLIST\n"
pad = size - len(out) - len(end) - 2
out += "#" + "x" * max(pad, 0) + "\n" + end
sys.stdout.write(out[:size])
PY

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    return 1
}

# COUNT keep-alive requests from one curl process (one connection): a curl
# config file naming the URL COUNT times.
requests() {
    local url=$1 count=$2 cfg="$work/requests-$2.curl"
    # (A header option applies to every URL of the file: named once.)
    { [ -z "${POLICY:-}" ] || printf 'header = "Origin: https://player.example.com"\n'
      for _ in $(seq 1 "$count"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done; } >"$cfg"
    curl -s -K "$cfg" -w '%{http_code}\n' | grep -c '^200$'
}

# Total instructions recorded in a callgrind output file.
total_ir() {
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

# run NAME AMOUNT PORT START_CMD... : starts the server under callgrind, warms it,
# sends AMOUNT requests (MODE=time: runs wrk for AMOUNT seconds), stops it;
# prints "instructions requests".
run() {
    local name=$1 secs=$2 port=$3
    shift 3
    local out="$work/$name-$secs.callgrind"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$work/$name-$secs.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_port "$port"
    local url="http://127.0.0.1:$port/live/index.m3u8"
    for _ in 1 2 3 4 5; do curl -s -o /dev/null "$url"; done
    local reqs
    if [ "$MODE" = time ]; then
        reqs=$(wrk -t1 -c"$CONNS" -d"${secs}s" "$url" | awk '/requests in/ { print $1 }')
    else
        reqs=$(requests "$url" "$secs")
    fi
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$(total_ir "$out") $reqs"
}

per_hit() {
    local name=$1 port=$2
    shift 2
    local a=$SHORT b=$LONG
    if [ "$MODE" != time ]; then a=$REQUESTS_SHORT b=$REQUESTS_LONG; fi
    read -r i1 r1 < <(run "$name" "$a" "$port" "$@")
    read -r i2 r2 < <(run "$name" "$b" "$port" "$@")
    if [ "$r2" -le "$r1" ]; then
        echo "$name: the long run served no more requests ($r1, $r2)" >&2
        return 1
    fi
    echo "$name: $r1 and $r2 requests; $i1 and $i2 instructions" >&2
    echo "$(( (i2 - i1) / (r2 - r1) )) $r1 $r2"
}

EDGE_PORT=$(free_port)
edge_source=(--origin "$work/media")
if [ -n "${POLICY:-}" ]; then
    case "$POLICY" in
        listed) origins='["https://player.example.com", "https://*.example.org"]' ;;
        any) origins='["*"]' ;;
        *) echo "POLICY is listed or any" >&2; exit 2 ;;
    esac
    cat >"$work/edge.toml" <<EOF
[[distributions]]
id = "EDEFAULT"
aliases = ["*"]

[[distributions.origins]]
id = "origin"
folder = "$work/media"

[distributions.default_behavior]
origin = "origin"

[distributions.default_behavior.response_headers]
remove = ["X-Powered-By"]

[distributions.default_behavior.response_headers.cors]
allow_origins = $origins
expose_headers = ["Content-Range"]

[distributions.default_behavior.response_headers.security]
strict_transport_security = { max_age = "1y" }
content_type_options = {}
EOF
    edge_source=(--config "$work/edge.toml")
fi
read -r edge_ir edge_r1 edge_r2 < <(per_hit mediaedge "$EDGE_PORT" "$EDGE_BIN" serve \
    "${edge_source[@]}" --listen "127.0.0.1:$EDGE_PORT" --admin-listen off --state-dir "$work/state")

nginx_ir="-"
if [ "${NGINX:-1}" != 0 ] && command -v nginx >/dev/null; then
    ORIGIN_PORT=$(free_port)
    NGINX_PORT=$(free_port)
    mkdir -p "$work/nginx/cache" "$work/nginx/tmp"
    cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    proxy_cache_path $work/nginx/cache levels=1:2 keys_zone=edge:10m max_size=1g;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $work/media;
        location / { add_header Cache-Control "max-age=86400"; }
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://127.0.0.1:$ORIGIN_PORT;
            proxy_cache edge;
            proxy_cache_valid 200 1d;
            proxy_http_version 1.1;
        }
    }
}
EOF
    read -r nginx_ir _ _ < <(per_hit nginx "$NGINX_PORT" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx")
fi

echo
echo "| server | instructions per ${SIZE}-byte manifest hit (HTTP/1.1 keep-alive, $CONNS connection(s)) |"
echo "|---|---:|"
echo "| mediaedge | $edge_ir |"
echo "| nginx proxy_cache | $nginx_ir |"
if [ "$nginx_ir" != "-" ]; then
    awk -v a="$edge_ir" -v b="$nginx_ir" 'BEGIN { printf "\nmediaedge / nginx: %.2f×\n", a / b }'
fi
