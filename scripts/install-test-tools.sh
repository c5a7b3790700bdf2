#!/usr/bin/env bash
# System tools some tests drive: tmux (the live `cade top` view) and Chromium (the HTML
# report, loaded headless). Idempotent; needs root or sudo for apt-get on Debian/Ubuntu.
set -euo pipefail
need=()
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-tools: please install ${need[*]} (no apt-get here)" >&2
  exit 1
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
