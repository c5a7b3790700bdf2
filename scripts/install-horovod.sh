#!/usr/bin/env bash
# Installs Horovod 0.28.1 (Gloo only, PyTorch extension) into the active virtualenv, or into
# .venv when none is active. Idempotent: does nothing when `import horovod.torch` already works.
#
# Why the unusual recipe: horovod 0.28.1 (its last release) compiles its PyTorch extension with
# -std=c++14 and strips any -std= from CXXFLAGS, while torch >= 2.1 headers require C++17. A
# compiler wrapper that appends -std=c++17 (GCC honours the last -std) fixes the build without
# patching horovod. pip must not isolate the build, or CMake cannot import torch. Horovod has no
# binary wheels, so this compiles (~2.5 min, ~4.6 GB of RAM at peak).
set -euo pipefail
cd "$(dirname "$0")/.."

HOROVOD_VERSION=0.28.1

if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  python="$VIRTUAL_ENV/bin/python"
elif [ -x .venv/bin/python ]; then
  python="$PWD/.venv/bin/python"
else
  echo "install-horovod: no active virtualenv and no .venv here (run scripts/setup-env.sh first)" >&2
  exit 1
fi

if "$python" -c "import horovod.torch" >/dev/null 2>&1; then
  echo "install-horovod: horovod.torch already importable in $python"
  exit 0
fi

if ! "$python" -c "import torch" >/dev/null 2>&1; then
  echo "install-horovod: torch is not installed in $python; install it first" >&2
  exit 1
fi

# Build tools: cmake >= 3.13 and a C++ compiler.
missing=""
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v g++ >/dev/null 2>&1 || missing="$missing g++"
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -q
    # shellcheck disable=SC2086
    $sudo_cmd apt-get install -y -q $missing
  else
    echo "install-horovod: missing build tools:$missing (install them, then rerun)" >&2
    exit 1
  fi
fi

"$python" -m pip install -q --disable-pip-version-check packaging cffi cloudpickle psutil pyyaml wheel

wrapper_dir=$(mktemp -d)
trap 'rm -rf "$wrapper_dir"' EXIT
cat >"$wrapper_dir/cxx17" <<EOF
#!/bin/sh
exec $(command -v g++) "\$@" -std=c++17
EOF
chmod +x "$wrapper_dir/cxx17"

echo "install-horovod: building horovod $HOROVOD_VERSION (a few minutes)"
CXX="$wrapper_dir/cxx17" \
  HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
  HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
  "$python" -m pip install -q --disable-pip-version-check --no-build-isolation --no-cache-dir \
  "horovod==$HOROVOD_VERSION"

# A single-process init proves the torch extension loads and the Gloo controller starts.
HOROVOD_CONTROLLER=gloo HOROVOD_CPU_OPERATIONS=gloo "$python" - <<'EOF'
import horovod
import horovod.torch as hvd

hvd.init()
assert hvd.size() == 1 and hvd.rank() == 0
print("install-horovod: horovod", horovod.__version__, "with torch OK")
hvd.shutdown()
EOF
