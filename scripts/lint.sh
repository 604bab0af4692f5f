#!/usr/bin/env bash
# ruff + mypy in one script.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV_BIN:-.venv/bin}
"$BIN/ruff" check edge quantize exporters tests benchmarks
"$BIN/mypy"
