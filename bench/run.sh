#!/usr/bin/env bash
# Runs the put/get throughput benchmark against the quickstart cluster
# (started if needed), beside iperf3 loopback and disk write speed.
#   bench/run.sh [rfs-bench put-get flags, e.g. --size-mib 256]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh bench
if ! ./target/release/dfs df >/dev/null 2>&1; then
    ./scripts/quickstart.sh
fi
cargo build --release -p rfs-bench
./target/release/rfs-bench put-get "$@"
