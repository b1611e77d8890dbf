#!/usr/bin/env bash
# The whole suite: formatting, lints, unit tests and the multi-process
# integration tests (real namenode/datanode processes on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build daemons"
cargo build --workspace --bins
echo "== tests"
# Each integration test runs its own cluster of processes; a few at a time
# keeps a 2-core machine responsive.
cargo test --workspace -- --test-threads="${RFS_TEST_THREADS:-3}"
