#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the cluster tests (run as root).
#   scripts/slurm_cluster.sh start   # install slurm-wlm + munge if absent, start, wait idle
#   scripts/slurm_cluster.sh stop    # stop slurmctld, slurmd and munged started by `start`
#   scripts/slurm_cluster.sh status  # sinfo
# This host is controller and only node; partition `debug`. No accounting storage:
# `sacct` is absent on purpose (hibayes filters submitit's warning about it).
set -euo pipefail

HOST=$(hostname -s)
STATE=/var/spool/hibayes-slurm
CONF=/etc/slurm/slurm.conf
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

install_packages() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
}

write_config() {
    $SUDO mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" /var/log/slurm /run/munge
    # Memory SLURM may hand out: what the machine has, less 1 GB for everything else.
    local mem_mb
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 - 1024}' /proc/meminfo)
    $SUDO tee "$CONF" >/dev/null <<CONF
ClusterName=hibayes
SlurmctldHost=$HOST
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        $SUDO mkdir -p /etc/munge
        $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        $SUDO chown munge:munge /etc/munge/munge.key
        $SUDO chmod 400 /etc/munge/munge.key
    fi
    $SUDO chown munge:munge /run/munge 2>/dev/null || true
    if ! pgrep -x munged >/dev/null; then
        $SUDO munged --force --pid-file="$STATE/munged.pid"
    fi
}

wait_idle() {
    local deadline=$((SECONDS + 120))
    while [ $SECONDS -lt $deadline ]; do
        if sinfo -h -N -o "%T" 2>/dev/null | grep -qx idle; then
            echo "slurm: node $HOST idle ($(sinfo -h -o '%P %D %c'))"
            return 0
        fi
        # A node left `down` by an earlier run comes back on request.
        $SUDO scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm: node $HOST did not become idle in 120 s" >&2
    sinfo >&2 || true
    tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    return 1
}

stop_pidfile() {
    local file=$1
    if [ -s "$file" ]; then
        local pid
        pid=$(cat "$file")
        $SUDO kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        $SUDO rm -f "$file"
    fi
}

case "${1:-}" in
    start)
        install_packages
        write_config
        start_munge
        $SUDO mkdir -p "$STATE"
        [ -s "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null \
            || $SUDO slurmctld -c    # -c: start clean, no jobs from an earlier run
        [ -s "$STATE/slurmd.pid" ] && kill -0 "$(cat "$STATE/slurmd.pid")" 2>/dev/null \
            || $SUDO slurmd
        wait_idle
        ;;
    stop)
        stop_pidfile "$STATE/slurmd.pid"
        stop_pidfile "$STATE/slurmctld.pid"
        stop_pidfile "$STATE/munged.pid"
        echo "slurm: stopped"
        ;;
    status)
        sinfo
        ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
