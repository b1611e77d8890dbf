#!/usr/bin/env bash
# rfs benchmarks, measured side by side with the machine's limits and with
# MooseFS in one run (see bench/README.md and the README's "Benchmarks").
#
#   bench/run.sh [--size-mib 2048] [--files 100000] [--nn-files 1000000] [--no-moosefs]
#       everything: limits, put/get, metadata, MooseFS (bench/peers/moosefs.sh),
#       committed creates and failover on an HA group, namenode memory per
#       file; writes bench/results/<date>-<sha>.{txt,json,md,png} and puts
#       the table and charts in README.md.
#   bench/run.sh limits [--disk-mib 1024]   loopback TCP, disk, raft log fdatasync,
#       memcpy, CRC32C
#   bench/run.sh log-fsync [--log-dir DIR]  the raft log's write + fdatasync alone:
#       appending vs fallocated vs zero-filled segments, 1 and 3 writers (~30 s)
#   bench/run.sh put [--size-mib 2048]      put/get at replication 1 and 3, 4 clients
#   bench/run.sh meta [--files 100000]      create/stat/list/delete, 1 and 16 tasks
#   bench/run.sh failover [--rounds 10]     kill -9 the HA leader under creates
#   bench/run.sh creates [--clients 1,16]   committed creates/s on an HA group
#   bench/run.sh nn-memory [--files 1000000] namenode RSS per one-block file
#       (fake datanodes, like NNThroughputBenchmark)
#   bench/run.sh moosefs [...]              the MooseFS peer alone
#   bench/run.sh profile [--seconds 15]     perf samples of the datanodes and the
#       leader namenode under put/get and under metadata load; flame graphs
#       bench/results/<date>-<sha>-{data,meta}-{datanode,namenode}.svg
# Each prints `name value unit` lines. put and meta use the quickstart
# cluster (started if needed); failover and creates start their own HA
# group under .rfs/bench-ha, nn-memory a namenode of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
NAMENODES=127.0.0.1:8020,127.0.0.1:8021,127.0.0.1:8022
BENCH=./target/release/rfs-bench

build() {
    cargo build --release -p rfs-namenode -p rfs-datanode -p rfs-client -p rfs-bench
}

cluster() {
    if ! ./target/release/dfs --namenode "$NAMENODES" df >/dev/null 2>&1; then
        ./scripts/quickstart.sh >&2
    fi
}

# The quickstart cluster's namenodes (nn1, nn2, witness), by pid file:
# other namenodes on the machine (tests) must not count.
nn_pids() {
    cat "${RFS_QUICKSTART_DIR:-.rfs}"/pids/{nn1,nn2,witness}.pid | paste -sd,
}

mode="${1:-all}"
case "$mode" in
limits)
    shift
    ./scripts/deps.sh bench >&2
    build >&2
    exec "$BENCH" limits "$@"
    ;;
put)
    shift
    build >&2
    cluster
    exec "$BENCH" put-get --namenode "$NAMENODES" "$@"
    ;;
meta)
    shift
    build >&2
    cluster
    exec "$BENCH" meta --namenode "$NAMENODES" --cpu-pids "$(nn_pids)" "$@"
    ;;
failover | creates | nn-memory | log-fsync)
    shift
    build >&2
    exec "$BENCH" "$mode" "$@"
    ;;
moosefs)
    shift
    exec bench/peers/moosefs.sh "$@"
    ;;
profile)
    shift
    seconds=15
    [ "${1:-}" = --seconds ] && seconds="$2"
    ./scripts/deps.sh bench >&2
    build >&2
    cluster
    stem="$(date +%F)-$(git rev-parse --short HEAD)"
    mkdir -p bench/results
    leader=$(./target/release/dfs --namenode "$NAMENODES" admin ha status |
        awk '$3 == "leader" { print $1 }')
    nn_pid=$(pgrep -f "release/namenode .*--id $leader( |$)" | head -1)
    dn_pids=$(pgrep -d, -f "release/datanode")
    # profile <what> <command...>: samples the whole machine while the load
    # runs (threads come and go, which per-pid recording loses), then draws
    # the datanodes' and the leader namenode's samples apart.
    profile() {
        local what="$1"
        shift
        local data="/tmp/rfs-perf-$what.data"
        perf record -F 99 --call-graph dwarf,16384 -a -o "$data" -- sleep "$seconds" 2>/dev/null &
        local rec=$!
        timeout "$seconds" "$@" >/dev/null || true
        wait "$rec" || true
        for side in "$dn_pids:datanode" "$nn_pid:namenode"; do
            local svg="bench/results/$stem-$what-${side#*:}.svg"
            if perf script -i "$data" --pid "${side%%:*}" 2>/dev/null |
                inferno-collapse-perf |
                inferno-flamegraph --title "rfs $what: ${side#*:}" >"$svg" 2>/dev/null; then
                echo "$svg"
            else
                echo "no samples of the ${side#*:} under $what load" >&2
                rm -f "$svg"
            fi
        done
        rm -f "$data"
    }
    profile data "$BENCH" put-get --namenode "$NAMENODES" --size-mib 4096 --replication 3
    profile meta "$BENCH" meta --namenode "$NAMENODES" --files 1000000 --tasks 16
    exit 0
    ;;
all | --*) ;;
*)
    sed -n '2,26p' "$0" >&2
    exit 2
    ;;
esac

[ "$mode" = all ] && shift || true
size_mib=2048
files=100000
nn_files=1000000
moosefs=1
while [ $# -gt 0 ]; do
    case "$1" in
    --size-mib) size_mib="$2"; shift 2 ;;
    --files) files="$2"; shift 2 ;;
    --nn-files) nn_files="$2"; shift 2 ;;
    --no-moosefs) moosefs=0; shift ;;
    *) echo "bench/run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

./scripts/deps.sh bench >&2
build >&2
cluster
stem="$(date +%F)-$(git rev-parse --short HEAD)"
mkdir -p bench/results
out="bench/results/$stem.txt"
: >"$out"
run() {
    echo "== $*" >&2
    "$@" | tee -a "$out"
}
run "$BENCH" limits --disk-mib "$size_mib"
run "$BENCH" put-get --namenode "$NAMENODES" --size-mib "$size_mib"
run "$BENCH" meta --namenode "$NAMENODES" --files "$files" --cpu-pids "$(nn_pids)"
if [ "$moosefs" = 1 ]; then
    # --chunk-fsync: chunkservers fsync too, so a put is durable on every
    # replica as an rfs put is (like with like).
    run bench/peers/moosefs.sh --size-mib "$size_mib" --files "$files" --chunk-fsync
fi
run "$BENCH" creates --clients 1,16
run "$BENCH" failover --rounds 5
run "$BENCH" nn-memory --files "$nn_files"
"$BENCH" report "$out" --stem "$stem" --readme README.md
