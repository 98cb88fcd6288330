#!/usr/bin/env bash
# Trace-driven VOD benchmark (see benches/vod_trace.py): mediaedge's memory and
# disk tiers beside nginx proxy_cache (disk) and Varnish (malloc), one run, all
# on 127.0.0.1. Needs nginx and varnishd (Debian: apt-get install -y nginx varnish).
# Knobs: SEGMENTS SEG_KIB MEMORY_MIB DISK_MIB REQUESTS CLIENTS ZIPF WINDOW SEED.
set -euo pipefail
cd "$(dirname "$0")/.."
for c in nginx varnishd python3; do
    command -v "$c" >/dev/null 2>&1 || [[ -x /usr/sbin/$c ]] || { echo "vod_trace: $c is missing" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin"
[[ -n "${EDGE_BIN:-}" ]] || cargo build --release --quiet
exec python3 benches/vod_trace.py
