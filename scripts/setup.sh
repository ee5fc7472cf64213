#!/usr/bin/env bash
# Installs the project into a virtual environment, .venv (or $DIFFUSION_CANVAS_VENV), never into the
# system's Python: stock Debian refuses `pip install` there (PEP 668, "externally-managed-environment").
#
#   bash scripts/setup.sh          the app's requirements (requirements.txt) and the package itself
#   bash scripts/setup.sh --dev    the same plus the test and training tools (requirements-dev.txt)
#
# The package is installed editable (`pip install -e .`), so `.venv/bin/python` imports dlm_core from any
# directory. The environment sees the system's site-packages (--system-site-packages): whatever is already
# installed at the pinned version is reused, anything else is installed into .venv. Rerunning is cheap.
# Needs: python3 >= 3.11 with its venv module (on Debian, as root, python3-venv is installed if missing)
# and the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DIFFUSION_CANVAS_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
requirements=requirements.txt
if [ "${1:-}" = "--dev" ]; then
  requirements=requirements-dev.txt
elif [ -n "${1:-}" ]; then
  echo "usage: bash scripts/setup.sh [--dev]" >&2
  exit 2
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "error: $PYTHON is $("$PYTHON" --version 2>&1); Diffusion Canvas needs Python 3.11 or newer (set PYTHON=...)" >&2
  exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv --system-site-packages "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: $PYTHON has no working venv module; installing Debian's python3-venv" >&2
      apt-get update -q && apt-get install -y -q python3-venv
      "$PYTHON" -m venv --system-site-packages "$VENV"
    else
      echo "error: '$PYTHON -m venv' failed; install your distribution's venv package (Debian: apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
fi

"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" -e .
echo "setup: $VENV ready ($requirements + the diffusion-canvas package, editable)"
