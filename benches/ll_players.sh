#!/usr/bin/env bash
# Low-latency delivery with real players at several audience sizes: runs
# tests/players_browser.rs with 1, 3 and 20 hls.js / dash.js players through the
# edge (and one direct player beside them, in the same run) and prints each
# run's figures: part delay, live latency, stalls and origin requests per part.
#
#   bash benches/ll_players.sh            # 1, 3 and 20 players, 40 s each
#   COUNTS="1 3" LL_PLAYER_SECONDS=30 bash benches/ll_players.sh
#   PROFILE=dev bash benches/ll_players.sh   # a debug build of the edge
#
# Needs what the browser tests need (README, "What the tests need"). 20 players
# decode 20 videos in one Chromium: on a small machine that load alone can
# stall players; the stall counts in the output say so.
set -uo pipefail
cd "$(dirname "$0")/.."
export LL_PLAYER_SECONDS="${LL_PLAYER_SECONDS:-40}"
# The edge as it is deployed: a release build (PROFILE=dev for a debug one).
PROFILE="${PROFILE:-release}"
cargo build --profile "$PROFILE" --test players_browser >/dev/null
for n in ${COUNTS:-1 3 20}; do
    for t in hls_js dash_js; do
        echo "== $t, $n player(s) through the edge, $LL_PLAYER_SECONDS s"
        LL_EDGE_PLAYERS="$n" cargo test -q --profile "$PROFILE" --test players_browser "$t" -- --nocapture 2>&1 \
            | grep -E '^(edge|direct|origin requests|non-fatal|test |thread|  )' || true
    done
done
