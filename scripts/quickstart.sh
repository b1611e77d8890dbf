#!/usr/bin/env bash
# One command to a working local cluster:
#   ./scripts/quickstart.sh          build (release), start an HA namenode group
#                                    (nn1, nn2, witness) + 3 datanodes in the
#                                    background under ./.rfs/, run a demo
#   ./scripts/quickstart.sh stop     stop them (data stays in ./.rfs/)
#   ./scripts/quickstart.sh status   show what is running
# Config: conf/rfs-ha.toml. Ports: namenodes RPC 8020 (nn1), 8021 (nn2),
# 8022 (witness), HTTP 9870-9872; datanodes data 9866-9868, HTTP 9864,9865,9869.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/.rfs
BIN=$ROOT/target/release
CONF=$ROOT/conf/rfs-ha.toml
DN_DATA=(9866 9867 9868)
DN_HTTP=(9864 9865 9869)

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

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
echo "== building release binaries (first time: several minutes)"
cargo build --release --bins -p rfs-namenode -p rfs-datanode -p rfs-client

mkdir -p "$RUN/pids" "$RUN/logs"
start() { # start <name> <cmd...>
    local name=$1; shift
    if running "$RUN/pids/$name.pid"; then
        echo "$name already running (pid $(cat "$RUN/pids/$name.pid"))"
        return
    fi
    nohup "$@" >"$RUN/logs/$name.log" 2>&1 &
    echo $! >"$RUN/pids/$name.pid"
    echo "started $name (pid $!, log .rfs/logs/$name.log)"
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
echo "== waiting for a leader and 3 live datanodes"
for _ in $(seq 1 150); do
    if dfs df 2>/dev/null | grep -Eq '^Live datanodes:[[:space:]]+3$'; then break; fi
    sleep 0.2
done
dfs df | grep -Eq '^Live datanodes:[[:space:]]+3$' || {
    echo "cluster did not come up; logs:" >&2
    tail -n 20 "$RUN"/logs/*.log >&2
    exit 1
}

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

rfs is running (data in .rfs/, logs in .rfs/logs/).
Use the shell:   export PATH="$BIN:\$PATH" RFS_CONF=$CONF
                 dfs ls /            dfs put FILE /dir/     dfs get /dir/FILE .
                 dfs admin ha status dfs --help             dfs <command> --help
Failover:        kill -9 the leader (pid in .rfs/pids/nn1.pid or nn2.pid), then
                 dfs admin ha status   shows the other namenode leading
                 within about two seconds; dfs commands keep working.
Metrics:         http://127.0.0.1:9870/metrics (nn1), :9871 (nn2), :9864/metrics (datanode 1)
Stop:            ./scripts/quickstart.sh stop
EOT
