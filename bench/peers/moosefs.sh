#!/usr/bin/env bash
# MooseFS peer benchmark for rfs (issue 6): the same workloads as
# `rfs-bench put-get` and `rfs-bench meta`, run against a throwaway MooseFS
# 3.0 cluster (Debian packages) on this machine: one mfsmaster, three
# mfschunkservers (each with its own data directory on the local disk) and
# one mfsmount FUSE client.
#
# Prints `name value unit` lines on stdout (the format bench/run.sh and
# `rfs-bench report` read); everything else goes to stderr.
#
# Needs root (FUSE mount, apt, drop_caches). Idempotent: installs the
# packages only when missing, never starts the distro's services, keeps all
# state in a temporary directory and removes it, and stops every process it
# started, also on error or Ctrl-C.
set -euo pipefail

PROG=moosefs.sh
PACKAGES=(moosefs-master moosefs-chunkserver moosefs-client fuse3)
CHUNKSERVERS=3

size_mib=1024
files=10000
small_bytes=4096
workers=16
base_port=19419
host_ip=""
work_base="${TMPDIR:-/var/tmp}"
start_timeout=90
install=1
chunk_fsync=0

usage() {
    cat <<EOF
Usage: bench/peers/moosefs.sh [options]

Starts a private MooseFS cluster (1 mfsmaster, $CHUNKSERVERS mfschunkservers, 1 mfsmount)
in a temporary directory, runs the rfs benchmark workloads through the
mount, prints one \`name value unit\` line per figure on stdout, then stops
everything and removes the directory.

Figures:
  moosefs_put_goal1, moosefs_put_goal3   MB/s   dd bs=4M conv=fsync of a random file
  moosefs_get                            MB/s   dd bs=4M of the goal-1 file, caches dropped
  moosefs_{create,stat,delete}[_W]       ops/s  empty files, 1 and W threads
  moosefs_list[_W]                       entries/s
  moosefs_small[_W]                      files/s  $small_bytes-byte files at goal 3
                                                (open, write, close), 1 and W threads
  moosefs_{create,stat,delete}[_W]_p{50,90,99}
                                         us     latency of single calls
                                                (nearest rank)

Options:
  --size-mib N       size of the put/get file in MiB (default $size_mib)
  --files N          files per metadata measurement, split over the threads
                     (default $files)
  --small-bytes N    size of the small files written at goal 3 (default
                     $small_bytes; 0 skips them)
  --workers W        concurrent threads of the second metadata run, each in a
                     directory of its own (default $workers)
  --base-port P      first of 6 TCP ports: master P..P+2, chunkservers
                     P+3..P+5 (default $base_port)
  --host-ip IP       address the daemons listen on, outside any namespace
                     (default: 10.254.77.1 on the loopback of a network
                     namespace of this run's own; MooseFS chunkservers
                     refuse 127.x.x.x as the master's address)
  --work-base DIR    where the temporary directory (chunk data included) is
                     made; must be on the local disk (default \$TMPDIR or
                     /var/tmp; now $work_base)
  --start-timeout S  seconds to wait for the cluster to come up (default $start_timeout)
  --chunk-fsync      set HDD_FSYNC_BEFORE_CLOSE = 1 on the chunkservers (fsync
                     each chunk file when its write ends); the packaged
                     default, used otherwise, is 0: a client fsync then only
                     reaches the chunkservers' page cache
  --no-install       fail instead of installing missing packages
  -h, --help         this help

Example: bench/peers/moosefs.sh --size-mib 256 --files 2000
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
positive() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --size-mib) positive "$1" "${2-}"; size_mib="$2"; shift 2 ;;
    --files) positive "$1" "${2-}"; files="$2"; shift 2 ;;
    --small-bytes) small_bytes="${2-}"; shift 2 ;;
    --workers) positive "$1" "${2-}"; workers="$2"; shift 2 ;;
    --base-port) positive "$1" "${2-}"; base_port="$2"; shift 2 ;;
    --host-ip) [ -n "${2-}" ] || die "--host-ip needs an address"; host_ip="$2"; shift 2 ;;
    --work-base) [ -n "${2-}" ] || die "--work-base needs a directory"; work_base="$2"; shift 2 ;;
    --start-timeout) positive "$1" "${2-}"; start_timeout="$2"; shift 2 ;;
    --chunk-fsync) chunk_fsync=1; shift ;;
    --no-install) install=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (FUSE mount, daemons, apt, drop_caches)"
[ -e /dev/fuse ] || die "/dev/fuse is missing: FUSE is not available here"
command -v python3 >/dev/null || die "python3 is needed for the metadata workload"

# ---------------------------------------------------------------- packages

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$install" = 1 ] || die "missing packages: ${missing[*]} (rerun without --no-install, or apt-get install them)"
    log "installing ${missing[*]} (services stay stopped: policy-rc.d denies starts)"
    # policy-rc.d exit 101 keeps invoke-rc.d / deb-systemd-invoke from starting
    # the packaged services; an existing policy file is put back afterwards.
    local policy=/usr/sbin/policy-rc.d saved="" rc=0
    if [ -e "$policy" ]; then
        saved="$(mktemp)"
        cp -p "$policy" "$saved"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >&2 || {
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2
    } || rc=$?
    if [ -n "$saved" ]; then
        cp -p "$saved" "$policy"
        rm -f "$saved"
    else
        rm -f "$policy"
    fi
    [ "$rc" = 0 ] || die "could not install ${missing[*]}"
}

install_packages
for c in mfsmaster mfschunkserver mfsmount mfssetgoal mfssettrashtime mfscheckfile; do
    command -v "$c" >/dev/null || die "$c not found after installing ${PACKAGES[*]}"
done
log "$(mfsmaster -v 2>&1 | head -n1)"

# ----------------------------------------------------------------- network

# The daemons and mfsmount run in a network namespace of this run's own,
# on an address of its loopback interface outside 127/8 (MooseFS refuses a
# 127.x master address), so no traffic of the benchmark touches a real
# interface.
# The FUSE mount made there is seen by every process of the machine (mount
# namespaces are not network namespaces), so the workloads run from here;
# the mfs* tools, which reach the master itself, run in the namespace.
netns=""
in_ns=()
if [ -z "$host_ip" ]; then
    netns="rfsbench-mfs-$$"
    host_ip=10.254.77.1
    ip netns add "$netns" || die "cannot create network namespace $netns (run as root)"
    # Until cleanup() takes over (it deletes it too).
    trap 'ip netns delete "$netns" 2>/dev/null' EXIT
    ip -n "$netns" link set lo up
    ip -n "$netns" addr add "$host_ip/32" dev lo ||
        die "cannot give $host_ip to the loopback of network namespace $netns"
    # nsenter, not `ip netns exec`: the latter also gives the process a
    # mount namespace of its own, where mfsmount's mount would stay hidden.
    in_ns=(nsenter --net="/run/netns/$netns")
    log "network namespace $netns, daemons on $host_ip"
fi
case "$host_ip" in
127.*) die "--host-ip $host_ip: MooseFS chunkservers refuse a loopback master address; use a NIC's address" ;;
esac
master_ml_port=$base_port
master_cs_port=$((base_port + 1))
master_cl_port=$((base_port + 2))
for ((p = base_port; p < base_port + 3 + CHUNKSERVERS; p++)); do
    if [ -n "$("${in_ns[@]}" ss -Htln "sport = :$p" 2>/dev/null)" ]; then
        die "TCP port $p is in use; pick other ports with --base-port"
    fi
done

# --------------------------------------------------------- state, teardown

mkdir -p "$work_base"
work="$(mktemp -d "$work_base/rfs-moosefs-bench.XXXXXX")"
mnt="$work/mnt"
src=""
master_pid=""
mount_pid=""
cs_pids=()

# Waits up to $2 seconds for process $1 (a child of this shell) to exit,
# then SIGKILLs it; reaps it either way.
stop_pid() {
    local pid="$1" secs="$2" i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "process $pid did not stop in ${secs}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

unmount() {
    local i
    if mountpoint -q "$mnt" 2>/dev/null; then
        umount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    fi
    if [ -n "$mount_pid" ]; then
        # mfsmount -f exits by itself once unmounted.
        for ((i = 0; i < 100; i++)); do
            kill -0 "$mount_pid" 2>/dev/null || break
            sleep 0.1
        done
        stop_pid "$mount_pid" 5
        mount_pid=""
    fi
}

cleanup() {
    local rc=$? pid left
    trap - EXIT INT TERM
    set +e
    log "stopping MooseFS (mount, chunkservers, master)"
    unmount
    for pid in "${cs_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${cs_pids[@]}"; do
        stop_pid "$pid" 30
    done
    stop_pid "$master_pid" 60
    [ -n "$src" ] && rm -f "$src"
    if mountpoint -q "$mnt" 2>/dev/null; then
        log "warning: $mnt is still mounted; leaving $work in place"
    else
        rm -rf "$work"
    fi
    left="$(pgrep -f -- "$work/" || true)"
    if [ -n "$netns" ] && [ -z "$left" ]; then
        ip netns delete "$netns" 2>/dev/null || log "warning: could not delete network namespace $netns"
    fi
    if [ -n "$left" ]; then
        log "warning: processes still running from $work: $(echo "$left" | tr '\n' ' ')"
        [ "$rc" = 0 ] && rc=1
    else
        log "no MooseFS process of this run is left"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

show_log() {
    log "last lines of $1:"
    tail -n 20 "$1" >&2 || true
}

# Waits until "$@" succeeds, at most $start_timeout seconds; $1.. is a
# command. Fails if the process $pid_watch has died meanwhile.
wait_for() {
    local what="$1" pid_watch="$2" logf="$3" deadline=$((SECONDS + start_timeout))
    shift 3
    until "$@" >/dev/null 2>&1; do
        if [ -n "$pid_watch" ] && ! kill -0 "$pid_watch" 2>/dev/null; then
            show_log "$logf"
            die "$what: the process exited"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log "$logf"
            die "$what: not ready after ${start_timeout}s"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------- disk and data

need_mib=$((size_mib * 4 + CHUNKSERVERS * 256 + 512)) # goal 1 + goal 3 copies + CS reserve
avail_mib="$(df -Pm "$work" | awk 'NR == 2 {print $4}')"
[ "$avail_mib" -ge "$need_mib" ] || die "$work has ${avail_mib} MiB free, needs about ${need_mib} MiB (try --work-base or a smaller --size-mib)"
log "work directory $work ($(df -P "$work" | awk 'NR == 2 {print $1}'), ${avail_mib} MiB free)"

# Random data (chunkservers skip zero blocks: /dev/zero would not be
# written), kept in RAM when /dev/shm has room so reading it costs nothing.
shm_mib="$(df -Pm /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}' || echo 0)"
if [ "${shm_mib:-0}" -ge $((size_mib + 512)) ]; then
    src="$(mktemp /dev/shm/rfs-moosefs-src.XXXXXX)"
else
    src="$work/src"
    log "warning: /dev/shm is too small; the random source file is on $work"
fi
log "generating ${size_mib} MiB of random data in $src"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$src"

# ----------------------------------------------------------------- cluster

# Common daemon settings: run as root in our directories, at normal
# priority (the packaged default of nice -19 would favour MooseFS over
# everything else on a shared machine).
common_cfg() {
    cat <<EOF
WORKING_USER = root
WORKING_GROUP = root
NICE_LEVEL = 0
DATA_PATH = $1
SYSLOG_IDENT = $2
EOF
}

start_master() {
    local d="$work/master"
    mkdir -p "$d"
    if [ -s /var/lib/mfs/metadata.mfs.empty ]; then
        cp /var/lib/mfs/metadata.mfs.empty "$d/metadata.mfs"
    else
        printf 'MFSM NEW' >"$d/metadata.mfs"
    fi
    printf '*\t/\trw,alldirs,admin,maproot=0:0\n*\t.\trw\n' >"$d/mfsexports.cfg"
    : >"$d/mfstopology.cfg"
    {
        common_cfg "$d" rfsbench-mfsmaster
        cat <<EOF
EXPORTS_FILENAME = $d/mfsexports.cfg
TOPOLOGY_FILENAME = $d/mfstopology.cfg
MATOML_LISTEN_HOST = $host_ip
MATOML_LISTEN_PORT = $master_ml_port
MATOCS_LISTEN_HOST = $host_ip
MATOCS_LISTEN_PORT = $master_cs_port
MATOCL_LISTEN_HOST = $host_ip
MATOCL_LISTEN_PORT = $master_cl_port
EOF
    } >"$d/mfsmaster.cfg"
    "${in_ns[@]}" mfsmaster -f -c "$d/mfsmaster.cfg" start >"$d/log" 2>&1 &
    master_pid=$!
    log "mfsmaster pid $master_pid on $host_ip:$master_cl_port"
    wait_for "mfsmaster" "$master_pid" "$d/log" grep -q 'initialized properly' "$d/log"
}

start_chunkserver() {
    local i="$1" d="$work/cs$1" port=$((base_port + 2 + $1))
    mkdir -p "$d/hdd"
    echo "$d/hdd" >"$d/mfshdd.cfg"
    {
        common_cfg "$d" "rfsbench-mfschunkserver$i"
        cat <<EOF
HDD_CONF_FILENAME = $d/mfshdd.cfg
MASTER_HOST = $host_ip
MASTER_PORT = $master_cs_port
BIND_HOST = $host_ip
CSSERV_LISTEN_HOST = $host_ip
CSSERV_LISTEN_PORT = $port
HDD_FSYNC_BEFORE_CLOSE = $chunk_fsync
EOF
    } >"$d/mfschunkserver.cfg"
    "${in_ns[@]}" mfschunkserver -f -c "$d/mfschunkserver.cfg" start >"$d/log" 2>&1 &
    cs_pids+=($!)
    log "mfschunkserver $i pid $! on $host_ip:$port, data in $d/hdd"
}

mount_fs() {
    mkdir -p "$mnt"
    "${in_ns[@]}" mfsmount -f "$mnt" -H "$host_ip" -P "$master_cl_port" -o mfsnice=0 >>"$work/mount.log" 2>&1 &
    mount_pid=$!
    wait_for "mfsmount" "$mount_pid" "$work/mount.log" mountpoint -q "$mnt"
}

# Succeeds once a freshly written chunk at goal 3 really has 3 copies,
# i.e. all chunkservers are registered and have space.
probe_three_copies() {
    local f
    f="$mnt/probe/p$RANDOM$RANDOM"
    python3 - "$f" <<'EOF' || return 1
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
try:
    os.write(fd, os.urandom(65536))
    os.fsync(fd)
finally:
    os.close(fd)
EOF
    local out
    out="$("${in_ns[@]}" mfscheckfile "$f" 2>/dev/null || true)"
    rm -f "$f"
    grep -Eq "chunks with $CHUNKSERVERS copies: +1" <<<"$out"
}

start_master
for ((i = 1; i <= CHUNKSERVERS; i++)); do
    start_chunkserver "$i"
done
mount_fs
log "mounted on $mnt"

"${in_ns[@]}" mfssettrashtime 0 "$mnt" >/dev/null # deletes are deletes, not moves to trash
mkdir "$mnt/probe" "$mnt/g1" "$mnt/g3" "$mnt/meta" "$mnt/small"
"${in_ns[@]}" mfssetgoal "$CHUNKSERVERS" "$mnt/probe" >/dev/null
"${in_ns[@]}" mfssetgoal 1 "$mnt/g1" >/dev/null
"${in_ns[@]}" mfssetgoal 3 "$mnt/g3" >/dev/null
"${in_ns[@]}" mfssetgoal 1 "$mnt/meta" >/dev/null
"${in_ns[@]}" mfssetgoal 3 "$mnt/small" >/dev/null

log "waiting for $CHUNKSERVERS chunkservers (a goal-$CHUNKSERVERS probe write must get $CHUNKSERVERS copies)"
deadline=$((SECONDS + start_timeout))
until probe_three_copies; do
    for ((i = 0; i < CHUNKSERVERS; i++)); do
        if ! kill -0 "${cs_pids[$i]}" 2>/dev/null; then
            show_log "$work/cs$((i + 1))/log"
            die "mfschunkserver $((i + 1)) exited"
        fi
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
        for ((i = 1; i <= CHUNKSERVERS; i++)); do show_log "$work/cs$i/log"; done
        show_log "$work/master/log"
        die "$CHUNKSERVERS chunkservers not all connected after ${start_timeout}s"
    fi
    sleep 1
done
log "$CHUNKSERVERS chunkservers connected"

# --------------------------------------------------------------- workloads

now() { date +%s.%N; }
# figure NAME BYTES T0 T1 -> MB/s (10^6 bytes, as rfs-bench reports)
mbps() { awk -v b="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%.1f", b / 1e6 / (t1 - t0) }'; }

bytes=$((size_mib * 1024 * 1024))
put() {
    local goal="$1" t0 t1
    log "put ${size_mib} MiB at goal $goal (dd bs=4M conv=fsync)"
    t0="$(now)"
    dd if="$src" of="$mnt/g$goal/file" bs=4M conv=fsync status=none
    t1="$(now)"
    echo "moosefs_put_goal$goal $(mbps "$bytes" "$t0" "$t1") MB/s"
}
put 1
put 3

# Cold read: a fresh mount (no client-side cache), then the kernel's page
# cache dropped, so chunk files are read from the disk.
log "remounting and dropping caches before the read"
sync
unmount
mount_fs
if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    log "page cache dropped (echo 3 > /proc/sys/vm/drop_caches)"
else
    log "drop_caches not permitted; evicting the chunk files with posix_fadvise(DONTNEED) instead"
    python3 - "$work"/cs*/hdd <<'EOF'
import os, sys
for top in sys.argv[1:]:
    for d, _, names in os.walk(top):
        for n in names:
            try:
                fd = os.open(os.path.join(d, n), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
EOF
fi
log "get ${size_mib} MiB (dd bs=4M of the goal-1 file)"
t0="$(now)"
dd if="$mnt/g1/file" of=/dev/null bs=4M status=none
t1="$(now)"
echo "moosefs_get $(mbps "$bytes" "$t0" "$t1") MB/s"
rm -f "$mnt/g1/file" "$mnt/g3/file"

# Small-file metadata: create (open O_CREAT + close) N empty files, stat each,
# list the directories, delete each. N is split over the threads, each in a
# directory of its own; lists are done one directory after another.
cat >"$work/meta.py" <<'EOF'
import os, sys, threading, time

root, files, threads, suffix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
small_root, small_bytes = sys.argv[5], int(sys.argv[6])
per = -(-files // threads)
dirs = [os.path.join(root, "t%d" % t) for t in range(threads)]
for d in dirs:
    os.makedirs(d)
names = ["f%07d" % i for i in range(per)]
clock = time.perf_counter_ns

# Each op appends every call's latency (ns) to the list it is given.
def create(d, lat):
    for n in names:
        t = clock()
        os.close(os.open(os.path.join(d, n), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
        lat.append(clock() - t)

def stat(d, lat):
    for n in names:
        t = clock()
        os.stat(os.path.join(d, n))
        lat.append(clock() - t)

payload = os.urandom(small_bytes)

def small(d, lat):
    for n in names:
        t = clock()
        fd = os.open(os.path.join(d, n), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.write(fd, payload)
        os.close(fd)
        lat.append(clock() - t)

def delete(d, lat):
    for n in names:
        t = clock()
        os.unlink(os.path.join(d, n))
        lat.append(clock() - t)

# Seconds for all threads, and every call's latency.
def timed(op):
    lats = [[] for _ in dirs]
    if threads == 1:
        t0 = time.perf_counter()
        op(dirs[0], lats[0])
        return time.perf_counter() - t0, lats[0]
    errors = []
    gate = threading.Barrier(threads + 1)
    def run(d, lat):
        gate.wait()
        try:
            op(d, lat)
        except BaseException as e:
            errors.append(e)
    ts = [threading.Thread(target=run, args=(d, lat)) for d, lat in zip(dirs, lats)]
    for t in ts:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return dt, [x for lat in lats for x in lat]

# Nearest rank, as rfs-bench's figures::percentile: the smallest sample with
# at least p% of the samples at or below it.
def percentiles(name, lat):
    lat.sort()
    for p in (50, 90, 99):
        rank = max(1, -(-len(lat) * p // 100))
        tails.append(("moosefs_%s%s_p%d" % (name, suffix, p), lat[rank - 1] / 1e3, "us"))

n = per * threads
out = []
tails = []
for name, op in (("create", create), ("stat", stat)):
    dt, lat = timed(op)
    out.append((name, n / dt, "ops/s"))
    percentiles(name, lat)
t0 = time.perf_counter()
listed = sum(len(os.listdir(d)) for d in dirs)
dt = time.perf_counter() - t0
if listed != n:
    sys.exit("listed %d entries, expected %d" % (listed, n))
out.append(("list", listed / dt, "entries/s"))
dt, lat = timed(delete)
out.append(("delete", n / dt, "ops/s"))
percentiles("delete", lat)
for d in dirs:
    os.rmdir(d)
os.rmdir(root)
if small_bytes > 0:
    # Written at goal 3 (the directory's), as rfs-bench writes them at
    # replication 3.
    dirs = [os.path.join(small_root, "t%d" % t) for t in range(threads)]
    for d in dirs:
        os.makedirs(d)
    dt, lat = timed(small)
    out.append(("small", n / dt, "files/s"))
    percentiles("small", lat)
    timed(delete)
    for d in dirs:
        os.rmdir(d)
    os.rmdir(small_root)
for name, value, unit in out:
    print("moosefs_%s%s %.1f %s" % (name, suffix, value, unit), flush=True)
for name, value, unit in tails:
    print("%s %.1f %s" % (name, value, unit), flush=True)
EOF

log "metadata: $files files, 1 thread"
python3 "$work/meta.py" "$mnt/meta/w1" "$files" 1 "" "$mnt/small/w1" "$small_bytes"
log "metadata: $files files, $workers threads"
python3 "$work/meta.py" "$mnt/meta/w$workers" "$files" "$workers" "_$workers" \
    "$mnt/small/w$workers" "$small_bytes"

log "done"
