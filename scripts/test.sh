#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine with Python 3.11, as root:
# installs the Python test needs and Debian's Chromium (for the browser test), lints, runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q chromium
fi
python3 -m ruff check .
python3 -m pytest "$@"
