# Sourced by setup.sh and test_lowest.sh: build a virtual environment once, from one requirements file.
#
#   _bm_build_venv VENV REQUIREMENTS "what to say while building" "what to say when pip fails"
#
# Nothing happens when VENV/.complete exists. Otherwise VENV is made afresh, pip installs REQUIREMENTS there (its log
# is shown only on failure) and checks them, and .complete is written last, so a half-built environment is rebuilt
# next time. Returns 1, after one line saying what to do, when the install or the check fails. Uses $PYTHON.
_bm_build_venv() {
    local venv="$1" requirements="$2" building="$3" failed="$4" log
    [ -f "$venv/.complete" ] && return 0
    echo "$building"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    log="$(mktemp)"
    if ! { "$venv/bin/python" -m pip install --upgrade pip && "$venv/bin/python" -m pip install -r "$requirements"; } >"$log" 2>&1; then
        grep -v "is ignored: it is neither" "$log" | tail -25 >&2
        rm -f "$log"
        echo "error: $failed" >&2
        return 1
    fi
    rm -f "$log"
    "$venv/bin/python" -m pip check >/dev/null || { "$venv/bin/python" -m pip check; return 1; }
    touch "$venv/.complete"
}
