#!/usr/bin/env bash
# Failover times (see benches/failover_times.py): an origin group's primary
# killed, blackholed or answering 503 under load; mediaedge beside nginx's
# upstream backup in the same run, all on 127.0.0.1. Needs nginx (Debian:
# apt-get install -y nginx). Knobs: CLIENTS WARM AFTER RUNS EDGE_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
for c in nginx python3; do
    command -v "$c" >/dev/null 2>&1 || { echo "failover_times: $c is missing" >&2; exit 1; }
done
[[ -n "${EDGE_BIN:-}" ]] || cargo build --release --quiet
exec python3 benches/failover_times.py
