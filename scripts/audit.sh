#!/usr/bin/env bash
# Dependency audit: every pin of requirements.lock against the PyPI advisory database (pip-audit).
#
# Fails (exit 1) on a known vulnerability that has a fixed release. Where the database cannot be reached
# (offline, or an index without PyPI's per-release JSON API) it prints one line saying so and exits 0.
# Usage: bash scripts/audit.sh   (sources scripts/setup.sh for the pinned pip-audit)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
source "$ROOT/scripts/setup.sh"
report="$(mktemp)"
log="$(mktemp)"
trap 'rm -f "$report" "$log"' EXIT
# --no-deps --disable-pip: audit the exact pins as written, without building an environment.
status=0
pip-audit --requirement "$ROOT/requirements.lock" --no-deps --disable-pip --progress-spinner off \
    --format json --output "$report" --timeout 20 >"$log" 2>&1 || status=$?
python - "$report" "$log" "$status" <<'EOF'
import json
import sys

report, log, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    with open(report, encoding="utf-8") as handle:
        data = json.load(handle)
except (OSError, ValueError):
    data = None
if data is None:
    text = open(log, encoding="utf-8", errors="replace").read()
    if any(word in text for word in ("ConnectionError", "NameResolutionError", "Max retries", "timed out",
                                     "Temporary failure in name resolution", "Network is unreachable")):
        print("audit skipped: the vulnerability database could not be reached (offline?); run scripts/audit.sh online.")
        sys.exit(0)
    print(text[-3000:], file=sys.stderr)
    print(f"error: pip-audit failed (exit {status}) without a report; see above.", file=sys.stderr)
    sys.exit(2)
deps = data.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
if deps and len(skipped) == len(deps):
    # Every lookup failed: the index answers, but not with per-release advisories (a mirror, or no network).
    print(f"audit skipped: the vulnerability database could not be reached for any of the {len(deps)} pins "
          f"({skipped[0]['skip_reason']}); run scripts/audit.sh where pypi.org is reachable.")
    sys.exit(0)
fixable, unfixed = [], []
for dep in deps:
    for vuln in dep.get("vulns", []):
        row = f"{dep['name']}=={dep['version']}: {vuln['id']}"
        if vuln.get("fix_versions"):
            fixable.append(f"{row} (fixed in {', '.join(vuln['fix_versions'])})")
        else:
            unfixed.append(f"{row} (no fixed release yet)")
for row in unfixed:
    print(f"warning: {row}")
if skipped:
    print(f"note: {len(skipped)} pin(s) could not be audited: {', '.join(d['name'] for d in skipped)}")
if fixable:
    for row in fixable:
        print(f"vulnerable: {row}")
    print(f"error: {len(fixable)} known vulnerability(ies) with a fixed release; raise the pins in requirements.lock.")
    sys.exit(1)
print(f"audit passed: {len(deps) - len(skipped)} pins checked, no known vulnerability with a fixed release.")
EOF
