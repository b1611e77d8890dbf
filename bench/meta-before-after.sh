#!/usr/bin/env bash
# Metadata figures of two rfs builds and MooseFS, side by side in one run:
#   bench/meta-before-after.sh BEFORE_BIN_DIR [--files N] [--no-moosefs]
# BEFORE_BIN_DIR holds namenode, datanode, dfs and rfs-bench of the build
# to compare with (copy them from target/release before changing the
# code); "after" is this tree's release build. Each side gets a fresh
# quickstart HA group (nn1, nn2, witness, 3 datanodes) in a directory of
# its own; prints `<side> name value unit` lines, then MooseFS's.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
before="$1"
shift
files=10000
moosefs=1
while [ $# -gt 0 ]; do
    case "$1" in
    --files) files="$2"; shift 2 ;;
    --no-moosefs) moosefs=0; shift ;;
    *) echo "meta-before-after.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
NN=127.0.0.1:8020,127.0.0.1:8021,127.0.0.1:8022
cargo build --release -p rfs-namenode -p rfs-datanode -p rfs-client -p rfs-bench >&2
run_dir=$(mktemp -d /var/tmp/rfs-meta-XXXXXX)
trap 'rm -rf "$run_dir"' EXIT
for side in before after; do
    bin="$before"
    [ "$side" = after ] && bin="$PWD/target/release"
    export RFS_QUICKSTART_BIN="$bin" RFS_QUICKSTART_DIR="$run_dir/$side"
    ./scripts/quickstart.sh >&2
    "$bin/rfs-bench" meta --namenode "$NN" --files "$files" --cpu-pids "$(cat "$run_dir/$side"/pids/{nn1,nn2,witness}.pid | paste -sd,)" |
        sed "s/^/$side /" || true
    ./scripts/quickstart.sh stop >&2
done
if [ "$moosefs" = 1 ]; then
    bench/peers/moosefs.sh --size-mib 16 --files "$files" | grep -E "create|stat|list|delete"
fi
