#!/usr/bin/env bash
# Low-latency delivery without a browser (tests/ll_delivery.rs): the requests
# an LL-HLS player makes (each next segment before it exists, streamed as it
# grows; blocking playlist reloads), through the edge and direct at the same
# time, on a release build. Prints part delay and blocking-reload delay per
# side, and the edge's arrival minus direct's, part by part.
#
#   bash benches/ll_delivery.sh                 # 60 s
#   LL_DELIVERY_SECONDS=120 RUNS=3 bash benches/ll_delivery.sh
#
# Needs ffmpeg with libx264 (Debian: apt-get install -y ffmpeg).
set -euo pipefail
cd "$(dirname "$0")/.."
export LL_DELIVERY_SECONDS="${LL_DELIVERY_SECONDS:-60}"
PROFILE="${PROFILE:-release}"
cargo build --profile "$PROFILE" --test ll_delivery >/dev/null
for run in $(seq 1 "${RUNS:-1}"); do
    echo "== run $run, $LL_DELIVERY_SECONDS s"
    cargo test -q --profile "$PROFILE" --test ll_delivery -- --nocapture 2>&1 \
        | grep -E '^(edge|direct|test |thread)' || true
done
