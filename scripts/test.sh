#!/usr/bin/env bash
# The test command (README.md): installs what the tests need on a fresh Debian
# machine, then runs cargo test. CI (.ci/run) calls this same script.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
# tests/players_ffmpeg.rs plays real streams with ffmpeg (and encodes a live one with libx264).
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
# tests/signed.rs and tests/error_pages.rs make RSA keys with the openssl command line.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# tests/disk_faults.rs makes cache files immutable with chattr (e2fsprogs).
command -v chattr >/dev/null 2>&1 || need+=(e2fsprogs)
# tests/players_browser.rs plays low-latency streams with hls.js and dash.js in
# headless Chromium (Debian's), driven from Node.js by playwright-core.
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "missing: ${need[*]} (run as root to install)" >&2
    fi
fi

# tests/signed.rs checks signed URLs and cookies against AWS's own signer
# (botocore's CloudFrontSigner, signing with the cryptography package).
# tests/field_level_encryption.rs decrypts with the AWS Encryption SDK.
# tests/s3_origin.rs runs moto's S3 server (its `server` extra brings flask
# and flask-cors) and checks the edge's SigV4 signer against botocore's.
if ! python3 -c 'import botocore, cryptography, aws_encryption_sdk, flask, flask_cors, moto.server' >/dev/null 2>&1; then
    python3 -m pip install --quiet botocore cryptography aws-encryption-sdk 'moto[server]' \
        || python3 -m pip install --quiet --break-system-packages botocore cryptography aws-encryption-sdk 'moto[server]'
fi

# The browser tests' JavaScript side (pinned by tests/players/package-lock.json;
# no browser is downloaded: playwright-core drives /usr/bin/chromium).
if [ ! -d tests/players/node_modules/playwright-core ] || [ tests/players/package-lock.json -nt tests/players/node_modules/.package-lock.json ]; then
    (cd tests/players && npm ci --no-audit --no-fund --loglevel=error)
fi

# The tests. They include tests/fuzz_seeds.rs, which runs
# every fuzz target's checks over its seed corpus (fuzz/seeds/), so the targets
# keep compiling and their properties keep holding (see docs/fuzzing.md).
cargo test --all-targets

# Optional: the fuzzers themselves, FUZZ_SECONDS each (needs a nightly
# toolchain and cargo-fuzz, and a second, instrumented build of the crate).
if [ -n "${FUZZ_SECONDS:-}" ]; then
    (cd fuzz && cargo +nightly fuzz build -O)
    for t in $(cd fuzz && cargo +nightly fuzz list); do
        # New inputs go to corpus/ (ignored by git); seeds/ is only read.
        mkdir -p "fuzz/corpus/$t"
        (cd fuzz && cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048)
    done
fi
