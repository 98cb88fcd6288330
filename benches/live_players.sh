#!/usr/bin/env bash
# The streaming benchmark: N players on a live HLS stream that ffmpeg encodes
# in real time, served by an nginx origin; first straight to the origin, then
# through mediaedge. Prints both `mediaedge bench players` tables and the
# origin's request rate in each case. Everything on 127.0.0.1, stopped at exit.
#
#   cargo build --release && bash benches/live_players.sh
#
# Knobs: PLAYERS=200 DURATION=30 WARMUP=8 ORIGIN_PORT=38301 EDGE_PORT=38302
# Needs: ffmpeg, nginx (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
PLAYERS=${PLAYERS:-200}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-8}
ORIGIN_PORT=${ORIGIN_PORT:-38301}
EDGE_PORT=${EDGE_PORT:-38302}
BIN=${BIN:-./target/release/mediaedge}
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

mkdir -p "$TMP/www/live" "$TMP/nginx"
chmod 755 "$TMP" "$TMP/www" "$TMP/www/live"   # nginx workers may run as another user
# A 2-rendition live HLS stream, 2 s segments, sliding window of 6.
ffmpeg -nostdin -v error -re -f lavfi -i "testsrc2=size=640x360:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -filter_complex "[0:v]split=2[a][b];[a]scale=320:180[v0];[b]scale=640:360[v1]" \
    -map "[v0]" -map "[v1]" -map 1:a -map 1:a -c:v libx264 -preset ultrafast -tune zerolatency -g 50 -keyint_min 50 -sc_threshold 0 \
    -b:v:0 300k -b:v:1 800k -c:a aac -b:a 64k -t $((WARMUP + DURATION * 2 + 30)) \
    -f hls -hls_time 2 -hls_list_size 6 -hls_flags delete_segments+omit_endlist+independent_segments \
    -var_stream_map "v:0,a:0 v:1,a:1" -master_pl_name master.m3u8 \
    -hls_segment_filename "$TMP/www/live/v%v_%05d.ts" "$TMP/www/live/v%v.m3u8" &
pids+=($!)

cat > "$TMP/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log $TMP/nginx/access.log;
    types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
    sendfile on;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
        location / { add_header Access-Control-Allow-Origin *; }
    }
}
CONF
nginx -c "$TMP/nginx/nginx.conf" &
pids+=($!)
"$BIN" serve --origin "http://127.0.0.1:$ORIGIN_PORT" --listen "127.0.0.1:$EDGE_PORT" --admin-listen off 2>"$TMP/edge.log" &
pids+=($!)

echo "warming up ${WARMUP}s (the encoder fills its window)..." >&2
sleep "$WARMUP"

run() { # name url
    local before after
    before=$(wc -l < "$TMP/nginx/access.log")
    echo "## $1: $PLAYERS players, ${DURATION}s"
    "$BIN" bench players "$2" --players "$PLAYERS" --duration "$DURATION"
    after=$(wc -l < "$TMP/nginx/access.log")
    local pl seg
    pl=$(tail -n +"$((before + 1))" "$TMP/nginx/access.log" | grep -c '\.m3u8' || true)
    seg=$(tail -n +"$((before + 1))" "$TMP/nginx/access.log" | grep -c '\.ts' || true)
    echo
    echo "origin requests: $((after - before)) in ${DURATION}s: playlists $pl ($(awk "BEGIN{printf \"%.1f\", $pl/$DURATION}")/s), segments $seg ($(awk "BEGIN{printf \"%.1f\", $seg/$DURATION}")/s)"
    echo
}
run "direct to origin" "http://127.0.0.1:$ORIGIN_PORT/live/master.m3u8"
run "through mediaedge" "http://127.0.0.1:$EDGE_PORT/live/master.m3u8"
