#!/usr/bin/env bash
# Creates .venv (once) and installs cade with the extras named in $1 (default: torch).
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-torch}
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch 2.13.0 is the tested version; pip reuses a wheel it already has.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]" "torch==2.13.0" 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import cade_cli, torch" >/dev/null
