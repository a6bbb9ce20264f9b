#!/usr/bin/env bash
# Install bench/gpu/bundle next to this machine's own torch (no package index needed) and run
# tick_latency.py. Arguments go to tick_latency.py; with $OUT set, the JSON goes to
# $OUT/tick_latency.json. Environment: PYTHON (default python3), BUNDLE (default
# bench/gpu/bundle), SITE_DIR (where the wheels are installed; default a fresh temp dir).
# All the GPU checks in one run: device_check.sh.
set -euo pipefail

tool=run_on_gpu
source "$(dirname "${BASH_SOURCE[0]}")/install_bundle.sh"
install_bundle

json_args=()
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    json_args=(--json "$OUT/tick_latency.json")
fi
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" exec "$py" "$here/tick_latency.py" "${json_args[@]}" "$@"
