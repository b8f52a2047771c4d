#!/usr/bin/env bash
# README command 1: set up, then run the main job (a real GHOLM search on the
# bundled synthetic fine-grained dataset, on the CPU). Extra arguments go to run_search.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python run_search.py --space gholm "$@"
