#!/usr/bin/env bash
# Installs hqrun and its test tools into ./.venv (idempotent; a second run takes seconds).
# torch is pinned to the CPU build first, and constraints.txt keeps every later
# install from swapping it for a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${HQRUN_EXTRAS:-test,physics,rtl,interchange}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet() {  # pip's per-index "location ignored" notes and setuptools banners are noise here
    { "$@" 2>&1; } | { grep -v -E "Location '.*' is ignored|BuildBackendWarning|^ *!!|\*{10}|^ *$" || true; }
}
quiet .venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0"
quiet .venv/bin/python -m pip install -q -c constraints.txt -e ".[${EXTRAS}]"
.venv/bin/python -c "import hqrun, torch; print('hqrun', hqrun.__version__, 'torch', torch.__version__)"
