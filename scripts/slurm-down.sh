#!/usr/bin/env bash
# slurm-down.sh: stop the test Slurm cluster started by scripts/slurm-up.sh.
#
#   bash scripts/slurm-down.sh               stop slurmctld, the slurmd's and munged (if up started it)
#   bash scripts/slurm-down.sh --keep-munge  leave munged running (used by slurm-up.sh on restart)
#
# It only stops processes whose pids slurm-up.sh recorded in /run/cade-slurm-testbed and that
# still run the expected program (checked through /proc/<pid>/comm), so an unrelated Slurm or
# munge on the machine is never touched. It removes the `# slurm-testbed` line from /etc/hosts.
# Safe to run when nothing is up; always exits 0 unless a daemon refuses to die.
set -uo pipefail

STATE_DIR=/run/cade-slurm-testbed
HOSTS_TAG="# slurm-testbed"

comm_of() { cat "/proc/$1/comm" 2>/dev/null; }

pids=""
for f in "$STATE_DIR"/slurmctld.pid "$STATE_DIR"/slurmd-*.pid; do
  [ -s "$f" ] || continue
  p=$(cat "$f")
  case "$(comm_of "$p")" in slurmctld | slurmd) pids="$pids $p" ;; esac
done

alive() {
  local p
  for p in $pids; do kill -0 "$p" 2>/dev/null && return 0; done
  return 1
}

if [ -n "$pids" ]; then
  # Graceful first: slurmctld saves state and tells every slurmd to exit.
  timeout 10 scontrol shutdown </dev/null >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do alive || break; sleep 0.1; done
  if alive; then
    for p in $pids; do kill "$p" 2>/dev/null; done
    for _ in $(seq 1 30); do alive || break; sleep 0.1; done
  fi
  if alive; then for p in $pids; do kill -9 "$p" 2>/dev/null; done; sleep 0.2; fi
fi
rm -f "$STATE_DIR"/slurmctld.pid "$STATE_DIR"/slurmd-*.pid

if [ "${1:-}" != --keep-munge ] && [ -s "$STATE_DIR/munged.pid" ]; then
  mp=$(cat "$STATE_DIR/munged.pid")
  if [ "$(comm_of "$mp")" = munged ]; then
    kill "$mp" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$mp" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$STATE_DIR/munged.pid"
fi

if grep -qF "$HOSTS_TAG" /etc/hosts 2>/dev/null; then
  # Rewrite in place (not mv): /etc/hosts may be a bind mount.
  kept=$(grep -vF "$HOSTS_TAG" /etc/hosts)
  printf '%s\n' "$kept" >/etc/hosts
fi

if alive 2>/dev/null; then
  echo "slurm-down: some daemons are still running:$pids" >&2
  exit 1
fi
exit 0
