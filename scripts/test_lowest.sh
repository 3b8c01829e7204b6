#!/usr/bin/env bash
# make test-lowest: the fast tests at the LOWEST versions pyproject.toml allows.
#
# Every direct dependency (the main list and the notebooks and test extras) is pinned to the lower bound
# pyproject.toml gives it; pip then resolves what those need. torch is the exception: it stays at the lock's
# pin (2.13.0), the CPU wheel on disk, since any other torch is a multi-GB CUDA download. The environment lives
# outside the checkout, keyed by the pins, so a second run reuses it. The notebooks are not run (nbval off):
# their stored outputs come from the lock's versions.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
cd "$ROOT"

# name==lower-bound for every direct dependency; a dependency without a lower bound is an error.
pins="$("$PYTHON" - <<'EOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
lock = dict(line.strip().split("==", 1) for line in open("requirements.lock") if "==" in line and not line.startswith("#"))
requirements = project["dependencies"] + [r for extra in ("notebooks", "test") for r in project["optional-dependencies"][extra]]
for text in requirements:
    name = re.match(r"[A-Za-z0-9_.-]+", text).group(0)
    if name.lower() == "torch":
        print(f"torch=={lock['torch']}")
        continue
    lower = re.search(r">=\s*([0-9][^,;\s]*)", text)
    if not lower:
        sys.exit(f"error: pyproject.toml gives {text!r} no lower bound (>=); test-lowest needs one.")
    print(f"{name}=={lower.group(1)}")
EOF
)"
HASH="$(printf '%s\n' "$pins" | sha256sum | cut -c1-12)"
VENV="${BERT_MEDITATIONS_LOWEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/bert-meditations/lowest-$HASH}"

source "$ROOT/scripts/venv.sh"
requirements="$(mktemp)"
printf '%s\n' "$pins" > "$requirements"
_bm_build_venv "$VENV" "$requirements" "Building the lowest-versions environment in $VENV (once) ..." \
    "the lowest versions in pyproject.toml do not install together (above)." || exit 1
rm -f "$requirements"

echo "Lowest allowed versions (direct dependencies):"
printf '%s\n' "$pins" | sed 's/^/  /'
export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV" PYTHONPATH="$ROOT"
export HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False DO_NOT_TRACK=1
export PYTHONHASHSEED=0 BERT_MEDITATIONS_PROFILE=tiny
# pyproject's addopts turn nbval on; here it is off, so they are replaced.
exec python -m pytest tests -p no:nbval -o addopts="-ra --strict-markers" -m "not slow and not browser and not soak" "$@"
