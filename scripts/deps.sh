#!/usr/bin/env bash
# Installs what rfs's scripts need on a fresh Debian bookworm machine, and
# nothing that is already there. Safe to run again and again.
#   scripts/deps.sh            build + test needs
#   scripts/deps.sh bench      also the benchmark's reference tools (iperf3,
#                              perf, and inferno for flame graphs) and the
#                              font of the report's PNG charts
set -euo pipefail

need_apt=()
want() { # want <command> <debian package>
    command -v "$1" >/dev/null 2>&1 || need_apt+=("$2")
}

want mount mount
want ip iproute2
want cmp diffutils
if [ "${1:-}" = bench ]; then
    want iperf3 iperf3
    want dd coreutils
    want perf linux-perf
    want fio fio
    # rfs-bench report draws its charts in this font (bench/src/plot.rs).
    [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "scripts/deps.sh: need root to install: ${need_apt[*]}" >&2
        exit 1
    fi
    echo "installing: ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/deps.sh: cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
fi

# Flame graphs from perf samples (bench/run.sh profile).
if [ "${1:-}" = bench ] && ! command -v inferno-flamegraph >/dev/null 2>&1; then
    echo "installing: inferno (cargo)" >&2
    cargo install --locked --quiet inferno
fi
