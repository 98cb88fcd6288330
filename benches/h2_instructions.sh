#!/usr/bin/env bash
# Instructions per cached manifest hit over HTTP/2, counted with callgrind
# (repeatable, unlike timings on a shared machine), for mediaedge and nginx
# proxy_cache in the same run.
#
# Two transports: h2 over TLS (ALPN, TLS 1.3, AES-128-GCM, the same ECDSA
# P-256 certificate for both) and h2c (HTTP/2 over plain TCP, prior
# knowledge). The h2c figure is the HTTP/2 work alone; TLS minus h2c is what
# encryption and TLS records add.
#
# Each server runs under callgrind twice per transport, each time warmed the
# same way, then loaded by one h2load run of a fixed request count
# (REQUESTS_SHORT, then REQUESTS_LONG) over the same connections. The
# difference in instructions divided by the difference in requests is the
# cost of one hit, with start-up, handshakes, warm-up and shutdown cancelled
# out.
#
#   cargo build --release --bin mediaedge && bash benches/h2_instructions.sh
#
# Knobs: REQUESTS_SHORT / REQUESTS_LONG (default 2000 and 8000), CONNS
# (h2load -c, default 1), STREAMS (h2load -m, default 16: requests in flight
# per connection, as browsers and the h2_tls.sh benchmark have them), SIZE
# (playlist bytes, 1500), TRANSPORTS (default "tls h2c"), NGINX=0 to skip
# nginx, EDGE_BIN, KEEP=DIR to keep the callgrind files
# (`callgrind_annotate --inclusive=yes DIR/<file>`).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS_SHORT=${REQUESTS_SHORT:-2000}
REQUESTS_LONG=${REQUESTS_LONG:-8000}
CONNS=${CONNS:-1}
STREAMS=${STREAMS:-16}
SIZE=${SIZE:-1500}
TRANSPORTS=${TRANSPORTS:-tls h2c}
EDGE_BIN=${EDGE_BIN:-./target/release/mediaedge}

for tool in valgrind h2load curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
[ -x "$EDGE_BIN" ] || { echo "build first: cargo build --release --bin mediaedge" >&2; exit 2; }
EDGE_BIN=$(realpath "$EDGE_BIN")

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

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# A complete (VOD) media playlist of exactly SIZE bytes: it stays fresh for
# the whole run, so every request counted is a hit.
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

# Waits until URL answers (curl_flags: -k for TLS, --http2-prior-knowledge for h2c).
wait_url() {
    local url=$1
    shift
    for _ in $(seq 1 600); do
        curl -s "$@" -o /dev/null "$url" && return 0
        sleep 0.1
    done
    echo "no answer from $url" >&2
    return 1
}

total_ir() {
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

# run NAME TRANSPORT COUNT URL START_CMD... : the server under callgrind,
# warmed, then COUNT requests from h2load; prints "instructions requests".
run() {
    local name=$1 transport=$2 count=$3 url=$4
    shift 4
    local out="$work/$name-$transport-$count.callgrind" flags=(-k --http2)
    [ "$transport" = h2c ] && flags=(--http2-prior-knowledge)
    (cd "$work" && exec valgrind --tool=callgrind --callgrind-out-file="$out" "$@") >"$work/$name-$transport-$count.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_url "$url" "${flags[@]}"
    for _ in 1 2 3 4 5; do curl -s "${flags[@]}" -o "$work/body" "$url"; done
    cmp -s "$work/body" "$work/media/live/index.m3u8" || { echo "$name ($transport) does not serve the playlist" >&2; return 1; }
    local res ok
    res=$(h2load -t1 -c"$CONNS" -m"$STREAMS" -n"$count" "$url" 2>&1)
    ok=$(awk '/^status codes:/ { print $3 }' <<<"$res")
    grep -q "succeeded, 0 failed" <<<"$res" || { echo "$name ($transport): failures" >&2; echo "$res" >&2; return 1; }
    grep -q "^TLS Protocol: TLSv1.3" <<<"$res" || [ "$transport" = h2c ] || { echo "$name: not TLS 1.3" >&2; return 1; }
    grep -q "^Application protocol: h2" <<<"$res" || { echo "$name ($transport): not h2" >&2; return 1; }
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$(total_ir "$out") ${ok% *}"
}

# per_hit NAME TRANSPORT URL START_CMD... : prints instructions per hit.
per_hit() {
    local name=$1 transport=$2 url=$3
    shift 3
    read -r i1 r1 < <(run "$name" "$transport" "$REQUESTS_SHORT" "$url" "$@")
    read -r i2 r2 < <(run "$name" "$transport" "$REQUESTS_LONG" "$url" "$@")
    if [ "$r2" -le "$r1" ]; then
        echo "$name ($transport): the long run served no more 2xx ($r1, $r2)" >&2
        return 1
    fi
    echo "$name $transport: $r1 and $r2 requests; $i1 and $i2 instructions" >&2
    echo $(((i2 - i1) / (r2 - r1)))
}

EDGE_H2C=$(free_port)
EDGE_TLS=$(free_port)
cat >"$work/edge.toml" <<EOF
[server]
listen = "127.0.0.1:$EDGE_H2C"
https_listen = "127.0.0.1:$EDGE_TLS"
certificates = [ { cert = "cert.pem", key = "key.pem", default = true } ]

[[distributions]]
id = "bench"
aliases = ["*"]

[[distributions.origins]]
id = "origin"
folder = "media"

[distributions.default_behavior]
origin = "origin"
EOF

declare -A IR
for t in $TRANSPORTS; do
    case $t in
        tls) url=https://127.0.0.1:$EDGE_TLS/live/index.m3u8 ;;
        h2c) url=http://127.0.0.1:$EDGE_H2C/live/index.m3u8 ;;
        *) echo "unknown transport $t" >&2; exit 2 ;;
    esac
    IR[edge_$t]=$(per_hit mediaedge "$t" "$url" "$EDGE_BIN" serve --config edge.toml \
        --admin-listen off --state-dir "$work/state")
done

if [ "${NGINX:-1}" != 0 ] && command -v nginx >/dev/null; then
    ORIGIN_PORT=$(free_port)
    NGINX_H2C=$(free_port)
    NGINX_TLS=$(free_port)
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
    keepalive_requests 10000000;
    http2_max_requests 10000000;
    proxy_cache_path $work/nginx/cache levels=1:2 keys_zone=edge:10m max_size=1g;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $work/media;
        location / { add_header Cache-Control "max-age=86400"; }
    }
    server {
        listen 127.0.0.1:$NGINX_TLS ssl http2;
        listen 127.0.0.1:$NGINX_H2C http2;
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
    for t in $TRANSPORTS; do
        case $t in
            tls) url=https://127.0.0.1:$NGINX_TLS/live/index.m3u8 ;;
            h2c) url=http://127.0.0.1:$NGINX_H2C/live/index.m3u8 ;;
        esac
        IR[nginx_$t]=$(per_hit nginx "$t" "$url" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx")
    done
fi

echo
echo "| server | instructions per ${SIZE}-byte manifest hit, HTTP/2 over TLS | HTTP/2 cleartext (h2c) | TLS share |"
echo "|---|---:|---:|---:|"
for s in mediaedge nginx; do
    k=edge
    [ "$s" = nginx ] && k=nginx
    [ "$s" = nginx ] && s="nginx proxy_cache"
    tls=${IR[${k}_tls]:--}
    h2c=${IR[${k}_h2c]:--}
    share=-
    [ "$tls" != - ] && [ "$h2c" != - ] && share=$((tls - h2c))
    echo "| $s | $tls | $h2c | $share |"
done
echo
echo "(h2load -c$CONNS -m$STREAMS, $REQUESTS_SHORT and $REQUESTS_LONG requests per run)"
for t in $TRANSPORTS; do
    a=${IR[edge_$t]:-} b=${IR[nginx_$t]:-}
    if [ -n "$a" ] && [ -n "$b" ]; then
        awk -v a="$a" -v b="$b" -v t="$t" 'BEGIN { printf "mediaedge / nginx (%s): %.2f×\n", t, a / b }'
    fi
done
