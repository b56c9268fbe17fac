#!/usr/bin/env bash
# The GPU check from the repository, without installing distillmeter:
#   scripts/gpu_check.sh [--out DIR] [--cpu-smoke] [--device cuda:N]
# Results go to --out, else $OUT, else ./gpu_check_out. PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
