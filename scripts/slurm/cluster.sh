#!/usr/bin/env bash
# A throw-away single-node Slurm cluster on this machine, for testing profiles/slurm.
#
#   scripts/slurm/cluster.sh up       install (if missing) and start munged, slurmctld, slurmd;
#                                     wait until `sinfo` shows the node idle
#   scripts/slurm/cluster.sh down     stop exactly the daemons `up` started, restore slurm.conf
#   scripts/slurm/cluster.sh status   say whether the cluster is up (exit 0) or not (exit 1)
#
# Debian/Ubuntu, as root, no systemd needed (see ../shared/notes/SLURM.md). Packages:
# slurmctld slurmd slurm-client munge (Slurm 22.05 on Debian 12). Everything it creates
# lives under $HISTOPROG_SLURM_STATE (default /var/lib/histoprog-slurm): pid files,
# logs, Slurm's state, the job completion file (jobcomp.txt, JobCompType=jobcomp/filetxt)
# and the backup of a pre-existing /etc/slurm/slurm.conf. `up` and `down` are idempotent
# and serialised with a lock, so two callers cannot interleave.
#
# Environment:
#   HISTOPROG_SLURM_STATE  state dir (default /var/lib/histoprog-slurm)
#   HISTOPROG_SLURM_CONF   slurm.conf path to write (default /etc/slurm/slurm.conf; the
#                          Slurm commands read this one unless SLURM_CONF is set)
#   HISTOPROG_SLURM_WAIT   seconds to wait for the node to become idle (default 60)
#   HISTOPROG_SLURM_NO_INSTALL=1  never run apt-get; fail if the binaries are missing

set -euo pipefail

STATE=${HISTOPROG_SLURM_STATE:-/var/lib/histoprog-slurm}
CONF=${HISTOPROG_SLURM_CONF:-/etc/slurm/slurm.conf}
WAIT=${HISTOPROG_SLURM_WAIT:-60}
PARTITION=main
PACKAGES=(slurmctld slurmd slurm-client munge)
# The daemons get a clean environment, not the caller's (e.g. a test's venv).
CLEAN_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*" >&2; }

# pid of a daemon we started, if it is still alive (else empty)
pidfile() {
    if [[ $1 == munged ]]; then echo "$STATE/run/munge/munged.pid"; else echo "$STATE/run/$1.pid"; fi
}

live_pid() {
    local file pid
    file=$(pidfile "$1")
    [[ -s $file ]] || return 0
    pid=$(<"$file")
    # alive and still that daemon (not a recycled pid)
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]; then
        echo "$pid"
    fi
}

started_by_us() { [[ -f $STATE/run/$1.ours ]]; }

need_root_linux() {
    [[ $(uname -s) == Linux ]] || die "needs Linux (this is $(uname -s))"
    [[ $(id -u) == 0 ]] || die "needs root (it installs packages and starts daemons as root)"
}

install_packages() {
    local missing=()
    for bin in slurmctld slurmd sbatch squeue sinfo munged; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ ${HISTOPROG_SLURM_NO_INSTALL:-0} == 1 ]] &&
        die "missing ${missing[*]} and HISTOPROG_SLURM_NO_INSTALL=1; install: apt-get install ${PACKAGES[*]}"
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]} and no apt-get; install Slurm (${PACKAGES[*]}) by hand"
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$STATE/log/apt.log" 2>&1; then
        say "apt-get install failed; running apt-get update and trying again"
        apt-get update -q >>"$STATE/log/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$STATE/log/apt.log" 2>&1 ||
            die "apt-get install ${PACKAGES[*]} failed; see $STATE/log/apt.log"
    fi
}

write_conf() {
    local node_line node
    node_line=$(slurmd -C 2>/dev/null | head -n 1) ||
        die "'slurmd -C' failed; cannot describe this node"
    [[ $node_line == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node_line"
    node=${node_line%% *}
    node=${node#NodeName=}
    mkdir -p "$(dirname "$CONF")"
    if [[ -e $CONF && ! -e $STATE/slurm.conf.orig && ! -e $STATE/slurm.conf.none ]]; then
        if ! grep -q '^# written by histoprog scripts/slurm/cluster.sh' "$CONF"; then
            cp -p "$CONF" "$STATE/slurm.conf.orig"
            say "backed up $CONF to $STATE/slurm.conf.orig"
        fi
    fi
    [[ -e $CONF || -e $STATE/slurm.conf.orig ]] || : >"$STATE/slurm.conf.none"
    cat >"$CONF.histoprog.tmp" <<EOF
# written by histoprog scripts/slurm/cluster.sh (state in $STATE); 'cluster.sh down' restores
# the previous file. A single-node test cluster: no accounting, no cgroups.
ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
SchedulerType=sched/backfill
$node_line
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.histoprog.tmp" "$CONF"
    echo "$node" >"$STATE/node"
}

start_munged() {
    if [[ -n $(live_pid munged) ]]; then return 0; fi
    if pgrep -x munged >/dev/null 2>&1; then
        say "munged already running (not started by this script); using it"
        return 0
    fi
    [[ -s /etc/munge/munge.key ]] || {
        say "no /etc/munge/munge.key; creating one"
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    # munged writes its pid file as user munge
    mkdir -p "$STATE/run/munge"
    chown munge:munge "$STATE/run/munge"
    rm -f "$(pidfile munged)"
    setsid "${CLEAN_ENV[@]}" runuser -u munge -- munged --pid-file="$(pidfile munged)" \
        </dev/null >>"$STATE/log/munged.out" 2>&1 9>&- || die "munged did not start; see $STATE/log/munged.out and /var/log/munge/munged.log"
    wait_pidfile munged
    touch "$STATE/run/munged.ours"
}

check_munge() {
    local i
    for i in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "munge does not work (munge -n | unmunge failed); see /var/log/munge/munged.log"
}

wait_pidfile() {
    local name=$1
    for _ in $(seq 50); do
        [[ -n $(live_pid "$name") ]] && return 0
        sleep 0.1
    done
    die "$name did not come up; see $STATE/log/$name*.log"
}

start_slurm_daemon() {
    local name=$1
    shift
    [[ -n $(live_pid "$name") ]] && return 0
    if pgrep -x "$name" >/dev/null 2>&1; then
        die "a $name not started by this script is running (pid $(pgrep -x "$name" | tr '\n' ' ')); stop it or use that cluster"
    fi
    rm -f "$(pidfile "$name")"
    setsid "${CLEAN_ENV[@]}" "$name" "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 9>&- ||
        die "$name failed to start; see $STATE/log/$name.log and $STATE/log/$name.out"
    wait_pidfile "$name"
    touch "$STATE/run/$name.ours"
}

node_state() {
    local node
    node=$(cat "$STATE/node" 2>/dev/null) || return 0
    timeout 5 sinfo -h -n "$node" -o '%T' 2>/dev/null | head -n 1 || true
}

wait_idle() {
    local state="" deadline=$((SECONDS + WAIT))
    while ((SECONDS < deadline)); do
        state=$(node_state)
        case $state in
        idle | mixed | allocated | completing) return 0 ;;
        down* | drain*)
            # ReturnToService=2 revives it on registration; nudge once in case it does not
            scontrol update nodename="$(cat "$STATE/node")" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "node '$(cat "$STATE/node" 2>/dev/null)' not idle after ${WAIT}s (state: '${state:-unknown}'); see $STATE/log/slurmctld.log, $STATE/log/slurmd.log"
}

cmd_up() {
    need_root_linux
    mkdir -p "$STATE/run" "$STATE/log" "$STATE/ctld" "$STATE/d"
    install_packages
    id slurm >/dev/null 2>&1 || die "user 'slurm' missing (the slurmctld package creates it)"
    id munge >/dev/null 2>&1 || die "user 'munge' missing (the munge package creates it)"
    chown slurm:slurm "$STATE/ctld" "$STATE/log"
    if [[ -n $(live_pid slurmctld) && -n $(live_pid slurmd) ]]; then
        say "already up (pids $(live_pid slurmctld), $(live_pid slurmd))"
        wait_idle
        return 0
    fi
    write_conf
    start_munged
    check_munge
    # -c: start from a clean job state (this is a throw-away test cluster); job ids start
    # again at 1, so the previous job completion records are moved aside
    if [[ -z $(live_pid slurmctld) && -s $STATE/log/jobcomp.txt ]]; then
        mv -f "$STATE/log/jobcomp.txt" "$STATE/log/jobcomp.txt.1"
    fi
    start_slurm_daemon slurmctld -c
    start_slurm_daemon slurmd
    wait_idle
    say "up: node $(cat "$STATE/node") $(node_state) in partition '$PARTITION'; conf $CONF; state $STATE"
}

stop_ours() {
    local name=$1 pid
    started_by_us "$name" || return 0
    pid=$(live_pid "$name")
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$(pidfile "$name")" "$STATE/run/$name.ours"
}

cmd_down() {
    need_root_linux
    [[ -d $STATE ]] || { say "nothing to stop (no $STATE)"; return 0; }
    # cancel what is left of our jobs so slurmd does not leave orphans behind
    if [[ -n $(live_pid slurmctld) ]]; then
        timeout 10 scancel --state=PENDING,RUNNING --partition="$PARTITION" -u "$(id -un)" \
            >/dev/null 2>&1 || true
    fi
    stop_ours slurmd
    stop_ours slurmctld
    stop_ours munged
    if [[ -e $STATE/slurm.conf.orig ]]; then
        mv -f "$STATE/slurm.conf.orig" "$CONF"
        say "restored the previous $CONF"
    elif [[ -e $STATE/slurm.conf.none ]]; then
        grep -q '^# written by histoprog scripts/slurm/cluster.sh' "$CONF" 2>/dev/null && rm -f "$CONF"
        rm -f "$STATE/slurm.conf.none"
    fi
    say "down (logs kept in $STATE/log)"
}

cmd_status() {
    local ctld d
    ctld=$(live_pid slurmctld)
    d=$(live_pid slurmd)
    if [[ -n $ctld && -n $d ]]; then
        echo "up: slurmctld $ctld, slurmd $d, munged $(live_pid munged || true), node $(cat "$STATE/node") $(node_state)"
        return 0
    fi
    echo "down${ctld:+ (slurmctld $ctld alive)}${d:+ (slurmd $d alive)}"
    return 1
}

main() {
    local cmd=${1:-}
    case $cmd in
    up | down)
        mkdir -p "$STATE"
        exec 9>"$STATE/lock"
        flock -w 300 9 || die "another cluster.sh $cmd holds $STATE/lock for 300 s"
        "cmd_$cmd"
        ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
    esac
}

main "$@"
