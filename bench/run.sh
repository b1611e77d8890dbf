#!/usr/bin/env bash
# rfs benchmarks.
#   bench/run.sh [put-get flags, e.g. --size-mib 256]
#       put/get throughput against the quickstart cluster (started if
#       needed), beside iperf3 loopback and disk write speed.
#   bench/run.sh failover [--rounds 10] [--rate 200] [--tick-ms ..] [--election-ticks ..]
#       an HA group of its own (nn1, nn2, witness); kill -9 the leader under a
#       steady stream of creates: time to the first acknowledged create.
#   bench/run.sh meta [--clients 1,16] [--seconds 5]
#       committed creates per second on an HA group of its own.
# The HA benchmarks keep their name dirs under .rfs/bench-ha (--dir).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
failover | meta)
    mode="$1"
    shift
    cargo build --release -p rfs-namenode -p rfs-datanode -p rfs-bench
    if [ "$mode" = failover ]; then
        exec ./target/release/rfs-bench failover "$@"
    else
        exec ./target/release/rfs-bench creates "$@"
    fi
    ;;
esac
./scripts/deps.sh bench
if ! ./target/release/dfs df >/dev/null 2>&1; then
    ./scripts/quickstart.sh
fi
cargo build --release -p rfs-bench
./target/release/rfs-bench put-get "$@"
