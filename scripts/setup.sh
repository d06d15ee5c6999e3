#!/usr/bin/env bash
# Create the repo-local virtual environment (.venv) and install pocl with miner and test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 'setuptools>=77'  # PEP 639 license field
.venv/bin/python -m pip install -q -e '.[miner,test]'
