#!/usr/bin/env bash
# slurm-up.sh: a single-machine Slurm test cluster for cade's tests (Debian/Ubuntu, run as root).
#
#   bash scripts/slurm-up.sh            start it (or check that our running instance is healthy)
#   bash scripts/slurm-up.sh --restart  stop our instance first, then start from fresh state
#   bash scripts/slurm-up.sh --status   print readiness (exit 0 when a 4-node srun works)
#   bash scripts/slurm-down.sh          stop only what this script started
#
# What it does:
#   * installs `slurm-wlm` and `munge` (--no-install-recommends) when slurmctld/munged are missing;
#   * writes /etc/slurm/slurm.conf and /etc/slurm/gres.conf for NODES emulated nodes
#     node1..nodeN (one slurmd per node on ports 17001..), each claiming CPUS cpus
#     (SlurmdParameters=config_overrides lets them claim more than the machine has) and GPUS fake
#     GPUs (symlinks to /dev/null: GRES files must be character devices);
#   * keeps finished jobs visible to `scontrol show job` for MinJobAge=600 s and writes a
#     job-completion file (jobcomp/filetxt) so `sacct -c` works without slurmdbd;
#   * adds one line `127.0.0.1 node1 .. nodeN # slurm-testbed` to /etc/hosts (removed by down);
#   * starts munged (unless a working one runs), slurmctld and the slurmd's, and waits until a
#     real `srun -N<NODES>` step succeeds.
# Idempotent: when our daemons already run with the same configuration it only re-checks
# readiness; if the configuration changed it restarts them from fresh state.
# Non-interactive: no prompt, no TTY needed (CI=true), daemons detach with stdio on /dev/null so
# a CI pipe is never held open. Whatever it started is recorded in $STATE_DIR (pids), and
# slurm-down.sh stops exactly those processes.
# Settings (environment): SLURM_TEST_NODES (4), SLURM_TEST_CPUS (8), SLURM_TEST_GPUS (2),
# SLURM_TEST_MEM_MB (4000), SLURM_TEST_TIMEOUT (60 s readiness wait).
set -euo pipefail

NODES=${SLURM_TEST_NODES:-4}
CPUS=${SLURM_TEST_CPUS:-8}
GPUS=${SLURM_TEST_GPUS:-2}
MEM_MB=${SLURM_TEST_MEM_MB:-4000}
READY_TIMEOUT=${SLURM_TEST_TIMEOUT:-60}
STATE_DIR=/run/cade-slurm-testbed
tmp=""
CONF_DIR=/etc/slurm
MARKER="# written by cade scripts/slurm-up.sh"
HOSTS_TAG="# slurm-testbed"
HERE=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive

log() { printf 'slurm-up: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- readiness -------------------------------------------------------------------------------
nodes_idle() {  # all NODES nodes report idle
  local s
  s=$(sinfo -h -N -o '%t' 2>/dev/null | sort | uniq -c | awk '{$1=$1};1') || return 1
  [ "$s" = "$NODES idle" ]
}

multi_node_step() {  # a real job step across every node (proves slurmd registration + munge)
  timeout 30 srun -N"$NODES" -n"$NODES" --time=1 --job-name=cade-testbed-ready true \
    </dev/null >/dev/null 2>&1
}

print_status() {
  if ! command -v sinfo >/dev/null; then echo "slurm testbed: not installed"; return 1; fi
  if multi_node_step; then
    echo "slurm testbed: ready ($NODES nodes, $CPUS cpus and $GPUS fake gpus each)"
    sinfo -N -o '%N %t %c %G' 2>/dev/null || true
    return 0
  fi
  echo "slurm testbed: not ready"
  sinfo -N 2>/dev/null || true
  return 1
}

# --- pieces ----------------------------------------------------------------------------------
need_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n -E bash "$0" "$@"
  fi
  die "must run as root (or with password-less sudo)"
}

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
  log "installing slurm-wlm and munge"
  local i
  for i in $(seq 1 30); do  # waits for another apt/dpkg holding the lock
    apt-get -o DPkg::Lock::Timeout=120 update -qq </dev/null >/dev/null && break
    sleep 5
  done
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends slurm-wlm munge \
    </dev/null >/dev/null
}

ours_alive() {  # pid file $1 names a live process whose comm is $2
  local f=$1 comm=$2 p
  [ -s "$f" ] || return 1
  p=$(cat "$f")
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$comm" ]
}

start_munge() {
  [ -s /etc/munge/munge.key ] || {
    mungekey --create --force
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  }
  install -d -o munge -g munge -m 0755 /run/munge
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi  # one works
  runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1
  local i
  for i in $(seq 1 50); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
  done
  [ -s /run/munge/munged.pid ] && cp /run/munge/munged.pid "$STATE_DIR/munged.pid"
}

node_list() { local n; for n in $(seq 1 "$NODES"); do printf 'node%s ' "$n"; done; }

write_config() {  # writes $1/slurm.conf and $1/gres.conf
  local dir=$1 last_port=$((17000 + NODES))
  cat >"$dir/slurm.conf" <<EOF
$MARKER: single-machine test cluster, $NODES emulated nodes
ClusterName=cadetest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=2
DependencyParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=5
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
GresTypes=gpu
NodeName=node[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[17001-$last_port] CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$dir/gres.conf" <<EOF
$MARKER
AutoDetect=off
NodeName=node[1-$NODES] Name=gpu File=/var/lib/slurm-fakegpu/gpu[0-$((GPUS - 1))]
EOF
}

config_unchanged() {  # $1: dir with freshly generated files
  cmp -s "$1/slurm.conf" "$CONF_DIR/slurm.conf" && cmp -s "$1/gres.conf" "$CONF_DIR/gres.conf"
}

install_config() {  # refuses to overwrite a configuration this script did not write
  local f
  for f in slurm.conf gres.conf; do
    if [ -s "$CONF_DIR/$f" ] && ! head -1 "$CONF_DIR/$f" | grep -qF "$MARKER"; then
      [ "${SLURM_TEST_FORCE:-0}" = 1 ] || die "$CONF_DIR/$f exists and was not written by this script (SLURM_TEST_FORCE=1 overwrites it)"
      cp "$CONF_DIR/$f" "$CONF_DIR/$f.before-cade-testbed"
    fi
  done
  install -d "$CONF_DIR"
  cp "$1/slurm.conf" "$1/gres.conf" "$CONF_DIR/"
}

add_hosts_line() {
  grep -qF "$HOSTS_TAG" /etc/hosts && return 0
  printf '127.0.0.1 %s%s\n' "$(node_list)" "$HOSTS_TAG" >>/etc/hosts
}

start_daemons() {
  local n i
  install -d /var/lib/slurm-fakegpu
  for i in $(seq 0 $((GPUS - 1))); do ln -sfn /dev/null "/var/lib/slurm-fakegpu/gpu$i"; done
  # Fresh state: saved DRAIN states and old jobs would otherwise survive restarts.
  rm -rf /var/spool/slurmctld /var/spool/slurmd
  install -d /var/spool/slurmctld /var/log/slurm
  for n in $(seq 1 "$NODES"); do install -d "/var/spool/slurmd/node$n"; done
  : >/var/log/slurm/jobcomp.log
  slurmctld </dev/null >/dev/null 2>&1  # forks into the background itself
  for n in $(seq 1 "$NODES"); do slurmd -N "node$n" </dev/null >/dev/null 2>&1; done
  for i in $(seq 1 50); do  # record pids for slurm-down.sh
    ours_alive /run/slurmctld.pid slurmctld && break
    sleep 0.1
  done
  ours_alive /run/slurmctld.pid slurmctld || { tail -20 /var/log/slurm/slurmctld.log >&2 || true; die "slurmctld did not start"; }
  cp /run/slurmctld.pid "$STATE_DIR/slurmctld.pid"
  for n in $(seq 1 "$NODES"); do
    for i in $(seq 1 50); do ours_alive "/run/slurmd-node$n.pid" slurmd && break; sleep 0.1; done
    ours_alive "/run/slurmd-node$n.pid" slurmd || die "slurmd for node$n did not start (see /var/log/slurm/slurmd-node$n.log)"
    cp "/run/slurmd-node$n.pid" "$STATE_DIR/slurmd-node$n.pid"
  done
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until nodes_idle; do
    [ "$SECONDS" -lt "$deadline" ] || { sinfo -N >&2 || true; tail -20 /var/log/slurm/slurmctld.log >&2 || true; die "nodes not idle after ${READY_TIMEOUT}s"; }
    sleep 0.2
  done
  until multi_node_step; do
    [ "$SECONDS" -lt "$deadline" ] || die "srun -N$NODES failed for ${READY_TIMEOUT}s"
    sleep 0.5
  done
}

our_daemons_running() {
  local n
  ours_alive "$STATE_DIR/slurmctld.pid" slurmctld || return 1
  for n in $(seq 1 "$NODES"); do ours_alive "$STATE_DIR/slurmd-node$n.pid" slurmd || return 1; done
}

# --- main ------------------------------------------------------------------------------------
main() {
  case "${1:-}" in
    --status) print_status; return ;;
    --restart | "") ;;
    *) die "unknown argument: $1 (use --status or --restart)" ;;
  esac
  need_root "$@"
  [ "$NODES" -ge 1 ] && [ "$GPUS" -ge 1 ] || die "SLURM_TEST_NODES and SLURM_TEST_GPUS must be >= 1"
  local started=$SECONDS
  install_packages
  install -d -m 0755 "$STATE_DIR"
  tmp=$(mktemp -d)
  trap '[ -z "$tmp" ] || rm -rf "$tmp"' EXIT
  write_config "$tmp"
  if [ "${1:-}" != --restart ] && our_daemons_running && config_unchanged "$tmp" && multi_node_step; then
    log "already up and ready ($NODES nodes)"
    return 0
  fi
  if ours_alive /run/slurmctld.pid slurmctld || ls "$STATE_DIR"/slurmd-*.pid >/dev/null 2>&1; then
    bash "$HERE/slurm-down.sh" --keep-munge
  fi
  start_munge
  install_config "$tmp"
  add_hosts_line
  start_daemons
  wait_ready
  log "ready: $NODES nodes x $CPUS cpus, $GPUS fake gpus each ($((SECONDS - started)) s)"
}

main "$@"
