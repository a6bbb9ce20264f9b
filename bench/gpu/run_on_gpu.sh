#!/usr/bin/env bash
# Install bench/gpu/bundle next to this machine's own torch (no package index needed) and run
# tick_latency.py. Arguments go to tick_latency.py; with $OUT set, the JSON goes to
# $OUT/tick_latency.json. Environment: PYTHON (default python3), BUNDLE (default
# bench/gpu/bundle), SITE_DIR (where the wheels are installed; default a fresh temp dir).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
bundle="${BUNDLE:-$here/bundle}"

fail() { echo "run_on_gpu: $*" >&2; exit 2; }

[[ -f "$bundle/manifest.json" ]] || fail "no bundle in $bundle: build it with 'python bench/gpu/make_bundle.py' and carry it along"
want="$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["python"])' "$bundle/manifest.json")"
have="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
[[ "$want" == "$have" ]] || fail "the bundle is built for Python $want, $py is Python $have (rebuild with make_bundle.py --python $have)"
"$py" -c 'import torch, torchvision, numpy' 2>/dev/null || fail "$py cannot import torch, torchvision and numpy, which the bundle expects the machine to have"

site="${SITE_DIR:-$(mktemp -d)/site}"
mkdir -p "$site"
start=$SECONDS
if "$py" -m pip --version >/dev/null 2>&1; then
    "$py" -m pip install --quiet --no-index --no-deps --disable-pip-version-check --no-compile \
        --target "$site" "$bundle"/*.whl
else
    # No pip: a wheel is a zip whose top level belongs in site-packages (none of these has .data).
    for whl in "$bundle"/*.whl; do "$py" -m zipfile -e "$whl" "$site"; done
fi
wheels=("$bundle"/*.whl)
echo "run_on_gpu: installed ${#wheels[@]} wheels into $site in $((SECONDS - start)) s"

json_args=()
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    json_args=(--json "$OUT/tick_latency.json")
fi
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" exec "$py" "$here/tick_latency.py" "${json_args[@]}" "$@"
