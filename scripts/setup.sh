#!/usr/bin/env bash
# Sourced by the Makefile's targets: builds (once) and activates the pinned environment.
#
# The environment lives outside the checkout, keyed by the lock's hash, so a second clone (or the
# same clone offline) reuses it instead of reinstalling. Set BERT_MEDITATIONS_VENV to choose the folder.
_bm_saved_opts="$(set +o)"  # sourced: restore the caller's shell options at the end
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK="$ROOT/requirements.lock"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "error: this project needs Python 3.11, and $PYTHON is $("$PYTHON" -V 2>&1); set PYTHON=/path/to/python3.11." >&2
    exit 2
fi
HASH="$(cat "$LOCK" | sha256sum | cut -c1-12)"
VENV="${BERT_MEDITATIONS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/bert-meditations/venv-$HASH}"

source "$ROOT/scripts/venv.sh"
_bm_build_venv "$VENV" "$LOCK" "Setting up the environment in $VENV (once; a minute or two) ..." \
    "installing the pinned packages failed (above); with no network, run this once where PyPI is reachable." || exit 1
unset -f _bm_build_venv

# The helpers package is imported straight from this checkout (no install step to go stale).
export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# No telemetry or version checks leave this machine.
export HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False DO_NOT_TRACK=1
cd "$ROOT"
eval "$_bm_saved_opts"; unset _bm_saved_opts
