#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine with Python 3.11, as root (CI runs it on a clean clone):
# installs the test needs into .venv (scripts/setup.sh --dev: a virtual environment, so Debian's
# "externally-managed" Python is never pip-installed into) and Debian's Chromium (for the browser
# tests), lints, runs pytest in .venv. Arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
PY="${DIFFUSION_CANVAS_VENV:-.venv}/bin/python"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q chromium
fi
"$PY" -m ruff check .
"$PY" -m pytest "$@"
