#!/usr/bin/env bash
# Create .venv (once) and install the project with its pinned versions.
# torch==2.14.1 / torchvision==0.29.1 are taken from this machine's local wheel
# store when pip finds them there; elsewhere pip downloads them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
    echo "[setup] installing pinned dependencies (first time: a few minutes)"
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
    .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "is ignored" || true
    .venv/bin/python -c "import torch, torchvision, timm, ray, optuna, wandb" \
        || { echo "[setup] installation failed: see pip output above" >&2; exit 1; }
    rm -f .venv/.installed-* && touch "$stamp"
fi
