#!/usr/bin/env bash
# Low-latency delivery with real players at several audience sizes: runs
# tests/players_browser.rs with 1, 3 and 20 hls.js / dash.js players through the
# edge and as many direct from the origin, and prints each run's figures: part
# delay, live latency (hls.js's own and against the origin's clock), how each
# side tuned in, stalls and origin requests per part.
#
#   bash benches/ll_players.sh            # 1, 3 and 20 players a side, 40 s each
#   COUNTS="1 3" LL_PLAYER_SECONDS=30 bash benches/ll_players.sh
#   PLAYERS="hls_js" COUNTS=20 LL_VIDEO=small bash benches/ll_players.sh
#   PROFILE=dev bash benches/ll_players.sh   # a debug build of the edge
#
# Both sides play at once (same encoder, same moment, same machine load) up to
# APART_FROM - 1 players a side; from APART_FROM (default 10) on, the edge's
# players play first and then as many direct players, one run after the other
# against the same origin (LL_SIDES=apart): 2 x 20 players decoding at once
# would only measure the machine. LL_SIDES=together or LL_SIDES=apart forces
# either. LL_DIRECT_PLAYERS sets the direct side's count (default: the edge's).
# LL_VIDEO=small plays 192x108 and 320x180 renditions instead of 384x216 and
# 640x360 (a quarter of the decoding; the same frame rate, parts, segments).
#
# Needs what the browser tests need (README, "What the tests need"). Many
# players decode many videos in one Chromium: on a small machine that load
# alone can stall players, on both sides; compare the stall counts side by side.
set -uo pipefail
cd "$(dirname "$0")/.."
export LL_PLAYER_SECONDS="${LL_PLAYER_SECONDS:-40}"
# The edge as it is deployed: a release build (PROFILE=dev for a debug one).
PROFILE="${PROFILE:-release}"
APART_FROM="${APART_FROM:-10}"
cargo build --profile "$PROFILE" --test players_browser >/dev/null
for n in ${COUNTS:-1 3 20}; do
    direct="${LL_DIRECT_PLAYERS:-$n}"
    sides="${LL_SIDES:-}"
    if [ -z "$sides" ]; then
        if [ "$n" -ge "$APART_FROM" ]; then sides=apart; else sides=together; fi
    fi
    for t in ${PLAYERS:-hls_js dash_js}; do
        echo "== $t, $n player(s) through the edge and $direct direct ($sides), video ${LL_VIDEO:-default}, $LL_PLAYER_SECONDS s; load $(cut -d' ' -f1-3 /proc/loadavg)"
        LL_EDGE_PLAYERS="$n" LL_DIRECT_PLAYERS="$direct" LL_SIDES="$sides" \
            cargo test -q --profile "$PROFILE" --test players_browser "$t" -- --nocapture 2>&1 \
            | grep -E '^(edge|direct|origin requests|non-fatal|test |thread|  )' || true
    done
done
