#!/usr/bin/env bash
# Re-resolve requirements.lock from pyproject.toml (with its notebooks and test extras) in a scratch venv.
# torch stays at 2.13.0: pip takes the CPU wheel where one is on disk (any other request downloads a CUDA build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$PYTHON" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip
"$scratch/venv/bin/python" -m pip install --quiet "torch==2.13.0" "$ROOT[notebooks,test]"
{
    echo "# Exact versions of the whole test environment (Python 3.11). Regenerate with: make lock"
    echo "# torch is pinned without its local tag: pip takes the CPU wheel where one is on disk, else PyPI's build."
    "$scratch/venv/bin/python" -m pip freeze --exclude bert-meditations | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/'
} > "$ROOT/requirements.lock.part"
mv "$ROOT/requirements.lock.part" "$ROOT/requirements.lock"
echo "requirements.lock: $(grep -c '==' "$ROOT/requirements.lock") pins; run make test, then commit it with environment.yml if a key pin moved."
