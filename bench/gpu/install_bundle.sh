# shellcheck shell=bash
# Sourced by run_on_gpu.sh and device_check.sh (not run on its own): checks that bench/gpu/bundle
# suits this machine's Python and installs it next to the machine's own torch, with no package
# index. Environment: PYTHON (default python3), BUNDLE (default bench/gpu/bundle), SITE_DIR
# (where the wheels go; default a fresh temp dir). Sets $py and $site; the caller puts $site on
# PYTHONPATH. Errors are one line on stderr, prefixed with $tool, and exit 2.

tool="${tool:-install_bundle}"  # the sourcing script's name, for its error lines
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
bundle="${BUNDLE:-$here/bundle}"

fail() { echo "$tool: $*" >&2; exit 2; }

install_bundle() {
    [[ -f "$bundle/manifest.json" ]] || fail "no bundle in $bundle: build it with 'python bench/gpu/make_bundle.py' and carry it along"
    local want have
    want="$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["python"])' "$bundle/manifest.json")"
    have="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    [[ "$want" == "$have" ]] || fail "the bundle is built for Python $want, $py is Python $have (rebuild with make_bundle.py --python $have)"
    "$py" -c 'import torch, torchvision, numpy' 2>/dev/null || fail "$py cannot import torch, torchvision and numpy, which the bundle expects the machine to have"

    site="${SITE_DIR:-$(mktemp -d)/site}"
    mkdir -p "$site"
    local start=$SECONDS
    if "$py" -m pip --version >/dev/null 2>&1; then
        "$py" -m pip install --quiet --no-index --no-deps --disable-pip-version-check --no-compile \
            --target "$site" "$bundle"/*.whl || fail "installing the bundle into $site failed (pip's message above)"
    else
        # No pip: a wheel is a zip whose top level belongs in site-packages (none of these has .data).
        for whl in "$bundle"/*.whl; do
            "$py" -m zipfile -e "$whl" "$site" || fail "unpacking $whl into $site failed"
        done
    fi
    local wheels=("$bundle"/*.whl)
    echo "$tool: installed ${#wheels[@]} wheels into $site in $((SECONDS - start)) s"
}
