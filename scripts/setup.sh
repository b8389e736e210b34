#!/usr/bin/env bash
# Create .venv with the tested versions (constraints.txt, CPU build of torch) and install autopeft in it.
# Safe to run again: an existing .venv is reused and only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "autopeft needs Python 3.11 or newer")'
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first and pinned: left to the resolver, an unpinned torch becomes a multi-GB CUDA build.
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
