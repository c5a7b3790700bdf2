#!/usr/bin/env bash
# The demo on a fresh machine: installs cade with PyTorch into .venv, then runs the digits
# Adaptive ASHA experiment on the embedded local backend (no scheduler needed) with a live
# view, and prints the best trial and its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh torch
export PATH="$PWD/.venv/bin:$PATH"
cade submit examples/digits/adaptive.yaml --scheduler local
cade best
