#!/usr/bin/env bash
# One command to a working local cluster:
#   ./scripts/quickstart.sh          build (release), start an HA namenode group
#                                    (nn1, nn2, witness) + 3 datanodes in the
#                                    background under ./.rfs/, run a demo
#   ./scripts/quickstart.sh stop     stop them (data stays in ./.rfs/)
#   ./scripts/quickstart.sh status   show what is running
# Config: conf/rfs-ha.toml. Ports: namenodes RPC 8020 (nn1), 8021 (nn2),
# 8022 (witness), HTTP 9870-9872; datanodes data 9866-9868, HTTP 9864,9865,9869.
# Each start keeps a daemon's last five logs: .rfs/logs/NAME.log is this
# run's, NAME.log.1 the one before (the crash you want to read survives the
# restart).
# Environment:
#   RFS_QUICKSTART_WAIT_S  how long to wait for a leader and 3 live
#                          datanodes [120]; a daemon that exits meanwhile
#                          fails the start at once, with its log
#   RFS_QUICKSTART_BIN     run these binaries instead of building release
#                          ones (the tests use the debug build)
#   RFS_QUICKSTART_DIR     where data, logs and pids go [./.rfs]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=${RFS_QUICKSTART_DIR:-$ROOT/.rfs}
BIN=${RFS_QUICKSTART_BIN:-$ROOT/target/release}
CONF=$ROOT/conf/rfs-ha.toml
WAIT_S=${RFS_QUICKSTART_WAIT_S:-120}
DN_DATA=(9866 9867 9868)
DN_HTTP=(9864 9865 9869)

running() { # running <pidfile>: its process lives (a zombie, dead but not yet reaped, does not)
    [ -f "$1" ] || return 1
    local pid
    pid=$(cat "$1")
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$(sed -E 's/^.*\) (.).*/\1/' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

stop() {
    local any=0
    for pidfile in "$RUN"/pids/*.pid; do
        [ -e "$pidfile" ] || continue
        if running "$pidfile"; then
            kill "$(cat "$pidfile")" && any=1
            echo "stopped $(basename "$pidfile" .pid) (pid $(cat "$pidfile"))"
        fi
        rm -f "$pidfile"
    done
    [ $any = 1 ] || echo "nothing running"
}

status() {
    for pidfile in "$RUN"/pids/*.pid; do
        [ -e "$pidfile" ] || { echo "nothing running"; return; }
        if running "$pidfile"; then state=running; else state=dead; fi
        echo "$(basename "$pidfile" .pid): $state (pid $(cat "$pidfile"))"
    done
}

case "${1:-start}" in
    stop) stop; exit 0 ;;
    status) status; exit 0 ;;
    start) ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

./scripts/deps.sh
if [ -z "${RFS_QUICKSTART_BIN:-}" ]; then
    echo "== building release binaries (first time: several minutes)"
    cargo build --release --bins -p rfs-namenode -p rfs-datanode -p rfs-client
fi

mkdir -p "$RUN/pids" "$RUN/logs"
rotate_log() { # rotate_log <file>: keep the last five, .1 the newest
    local log=$1 k
    [ -s "$log" ] || return 0
    for k in 4 3 2 1; do
        if [ -e "$log.$k" ]; then mv -f "$log.$k" "$log.$((k + 1))"; fi
    done
    mv -f "$log" "$log.1"
}
start() { # start <name> <cmd...>
    local name=$1; shift
    if running "$RUN/pids/$name.pid"; then
        echo "$name already running (pid $(cat "$RUN/pids/$name.pid"))"
        return
    fi
    rotate_log "$RUN/logs/$name.log"
    nohup "$@" >"$RUN/logs/$name.log" 2>&1 &
    echo $! >"$RUN/pids/$name.pid"
    echo "started $name (pid $!, log $RUN/logs/$name.log)"
}

start nn1 "$BIN/namenode" --config "$CONF" --id nn1 --http-addr 127.0.0.1:9870 --name-dir "$RUN/nn1"
start nn2 "$BIN/namenode" --config "$CONF" --id nn2 --http-addr 127.0.0.1:9871 --name-dir "$RUN/nn2"
start witness "$BIN/namenode" --config "$CONF" --id witness --witness --http-addr 127.0.0.1:9872 \
    --name-dir "$RUN/witness"
for i in 0 1 2; do
    start "datanode$((i + 1))" "$BIN/datanode" --config "$CONF" --data-dir "$RUN/dn$((i + 1))" \
        --data-addr "127.0.0.1:${DN_DATA[$i]}" --http-addr "127.0.0.1:${DN_HTTP[$i]}"
done

dfs() { "$BIN/dfs" --config "$CONF" "$@"; }
echo "== waiting for a leader and 3 live datanodes (up to ${WAIT_S}s)"
waiting_since=$SECONDS
deadline=$((SECONDS + WAIT_S))
next_note=$((SECONDS + 15))
until dfs df 2>/dev/null | grep -Eq '^Live datanodes:[[:space:]]+3$'; do
    # A daemon that died will not come up however long we wait.
    for pidfile in "$RUN"/pids/*.pid; do
        running "$pidfile" && continue
        name=$(basename "$pidfile" .pid)
        echo "$name exited while the cluster was starting; the end of $RUN/logs/$name.log:" >&2
        tail -n 20 "$RUN/logs/$name.log" >&2
        exit 1
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "no leader and 3 live datanodes after ${WAIT_S}s (RFS_QUICKSTART_WAIT_S); logs:" >&2
        tail -n 20 "$RUN"/logs/*.log >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$next_note" ]; then
        echo "still waiting ($((SECONDS - waiting_since)) s): $(dfs df 2>&1 | grep -E '^(Live datanodes|dfs:)' | head -1)"
        next_note=$((SECONDS + 15))
    fi
    sleep 0.5
done

echo "== demo: put / ls / get / cmp"
demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
head -c $((3 * 1024 * 1024 + 4321)) /dev/urandom >"$demo/sample.bin"
dfs mkdir -p /demo
dfs put -f "$demo/sample.bin" /demo/sample.bin
dfs ls -h /demo
dfs get /demo/sample.bin "$demo/back.bin"
cmp "$demo/sample.bin" "$demo/back.bin"
echo "round trip OK: $(stat -c %s "$demo/back.bin") bytes, 3 replicas, CRC32C-checked"
dfs df -h
echo "== the namenode group"
dfs admin ha status

cat <<EOT

rfs is running (data in $RUN/, logs in $RUN/logs/, the previous run's as NAME.log.1).
Use the shell:   export PATH="$BIN:\$PATH" RFS_CONF=$CONF
                 dfs ls /            dfs put FILE /dir/     dfs get /dir/FILE .
                 dfs admin ha status dfs --help             dfs <command> --help
Failover:        kill -9 the leader (pid in .rfs/pids/nn1.pid or nn2.pid), then
                 dfs admin ha status   shows the other namenode leading
                 within about two seconds; dfs commands keep working.
Metrics:         http://127.0.0.1:9870/metrics (nn1), :9871 (nn2), :9864/metrics (datanode 1)
Stop:            ./scripts/quickstart.sh stop
EOT
