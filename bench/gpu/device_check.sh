#!/usr/bin/env bash
# Every GPU figure still open in bench/gpu/README.md, in one run on a GPU machine without a
# package index (the device tool lends one for about 15 minutes a session, start-up included).
# It installs bench/gpu/bundle once, then runs each part under its own time limit and goes on
# when one fails, so that a bad part costs only its own figures:
#
#   tick_latency      the policy core's tick (bare, attention, relevance, SAE, both)   tick_latency.py
#   sae_step          one SAE training step, chosen-latents backward vs dense autograd  ../bench_sae_step.py
#   sae_train         streamed vs in-memory training, tokens/s and held-out FVU          sae_train.py
#   pai_sae_train     `pai sae train --device cuda` itself, on sae_train's shards        pai_ros.cli
#   torchrun_train    the same under torchrun over NCCL (needs two GPUs; else skipped)  pai_ros.cli
#
# `pai sae collect --device cuda` is not among them: it reads LeRobotDataset, whose readers
# (datasets, pandas, pyarrow, av: about 107 MB of wheels) do not fit the 64 MiB the device tool
# carries; its per-frame GPU work is one policy forward with capture (tick_latency's rows).
#
# Usage (on the device tool: carry bench/gpu/bundle; the command is the line below):
#   bash bench/gpu/device_check.sh                   # CUDA; results in $OUT (else a temp dir)
#   bash bench/gpu/device_check.sh --budget 420      # the whole run's seconds (default 420 on CUDA)
#   bash bench/gpu/device_check.sh --smoke           # the same parts on the CPU at toy sizes
#   bash bench/gpu/device_check.sh --smoke --probe-modules FILE
#       no bundle: this environment runs the smoke parts and FILE gets the top-level modules they
#       imported (make_bundle.py builds the bundle from that list)
# In $OUT: device_check.md (a table of parts: exit status, seconds, files), logs/<part>.log, and
# the JSON figures each part writes. Exit status 0 when every part that ran passed.
set -uo pipefail  # not -e: one failed part must not stop the others

tool=device_check
source "$(dirname "${BASH_SOURCE[0]}")/install_bundle.sh"
repo="$(cd "$here/../.." && pwd)"

mode=gpu
probe=""
budget=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --smoke) mode=smoke ;;
        --probe-modules) [[ $# -ge 2 ]] || fail "--probe-modules needs a file"; probe="$(realpath -m "$2")"; shift ;;
        --budget) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || fail "--budget needs a number of seconds"; budget="$2"; shift ;;
        *) fail "unknown argument '$1' (use --smoke, --probe-modules FILE, --budget SECONDS)" ;;
    esac
    shift
done
[[ -z "$probe" || "$mode" == smoke ]] || fail "--probe-modules needs --smoke (the probe runs here, on the CPU)"
# The whole run, install included, fits the budget (the device tool kills a command at 600 s;
# the README's timeout_s is 480): a part gets what is left when its own limit is more, and a
# part left with under a minute is skipped and said to be, so the summary is always written.
budget="${budget:-$([[ "$mode" == gpu ]] && echo 420 || echo 1800)}"

if [[ -z "$probe" ]]; then
    install_bundle
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# The working tree's pai_ros, not the bundle's copy of it (built whenever make_bundle.py last
# ran): every part measures the same code, the code of this checkout.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
out="${OUT:-$(mktemp -d)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/logs"
summary="$out/device_check.md"
failed=0

# py_cmd --script PATH -- ARGS | --module NAME -- ARGS: sets $cmd to `python PATH ARGS` /
# `python -m NAME ARGS`, or to the same through module_probe.py when probing.
py_cmd() {
    if [[ -n "$probe" ]]; then
        cmd=("$py" "$here/module_probe.py" --out "$probe" "$@")
    elif [[ "$1" == --script ]]; then
        cmd=("$py" "$2" "${@:4}")
    else
        cmd=("$py" -m "$2" "${@:4}")
    fi
}

# part NAME LIMIT_S COMMAND...: one part, its output in logs/NAME.log and on stdout, its line in
# the summary; its limit is cut to what the budget has left (after a kill's grace period).
part() {
    local name="$1" limit="$2" start=$SECONDS rc note="" left
    shift 2
    left=$((budget - SECONDS - KILL_GRACE - 5))
    if [[ $left -lt 60 ]]; then
        skip "$name" "no time left of the ${budget} s budget"
        failed=1
        return
    fi
    [[ $left -lt $limit ]] && limit=$left
    echo "== $name (limit ${limit} s)"
    # torchrun's workers stop within its own 30 s after it is signalled: the grace covers them.
    timeout --kill-after=$KILL_GRACE "$limit" "$@" 2>&1 | tee "$out/logs/$name.log"
    rc=${PIPESTATUS[0]}
    [[ $rc -eq 0 ]] || failed=1
    [[ $rc -eq 124 || $rc -eq 137 ]] && note=" (over its ${limit} s limit)"
    echo "| $name | $rc$note | $((SECONDS - start)) | logs/$name.log |" >> "$summary"
}

skip() {
    echo "== $1: skipped, $2"
    echo "| $1 | skipped: $2 | - | - |" >> "$summary"
}

KILL_GRACE=40

copy_metrics() {  # the SAE directory's metrics.json, under the part's name
    [[ -f "$1/metrics.json" ]] && cp "$1/metrics.json" "$out/$2_metrics.json"
}

if [[ "$mode" == gpu ]]; then
    device=cuda ticks=(--ticks 300 --warmup 30) step=(--rounds 10)
    train=(--tokens 1000000 --steps 300 --rounds 3) cli=(--steps 1000 --batch-size 4096)
    "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
        || fail "$py sees no CUDA device (use --smoke for the CPU)"
else
    device=cpu ticks=(--ticks 2 --warmup 0 --settings bare both) step=(--quick)
    train=(--tokens 12040 --steps 3 --rounds 1) cli=(--steps 5 --batch-size 256)
fi
[[ -n "$probe" ]] && ticks+=(--stand-ins force)  # the probe sees what the stand-ins replace as absent

{
    echo "# device_check ($mode) $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    "$py" -c 'import platform, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"{gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}), Python {platform.python_version()}")'
    echo
    echo "| part | exit | seconds | output |"
    echo "|---|---|---|---|"
} > "$summary"

py_cmd --script "$here/tick_latency.py" -- --device "$device" "${ticks[@]}" --json "$out/tick_latency.json"
part tick_latency 240 "${cmd[@]}"
py_cmd --script "$repo/bench/bench_sae_step.py" -- --device "$device" "${step[@]}"
part sae_step 180 "${cmd[@]}"
py_cmd --script "$here/sae_train.py" -- --device "$device" "${train[@]}" --shards "$work/shards" \
    --json "$out/sae_train.json"
part sae_train 240 "${cmd[@]}"
if [[ -f "$work/shards/collect.json" ]]; then
    py_cmd --module pai_ros.cli -- sae train --activations "$work/shards" --output "$work/sae" --device "$device" \
        "${cli[@]}" --eval-frames 0 --quiet
    part pai_sae_train 150 "${cmd[@]}"
    copy_metrics "$work/sae" pai_sae_train
    gpus="$("$py" -c 'import torch; print(torch.cuda.device_count())')"
    if [[ "$mode" == gpu && "$gpus" -ge 2 ]]; then
        part torchrun_train 180 "$py" -m torch.distributed.run --standalone --nproc-per-node 2 -m pai_ros.cli \
            sae train --activations "$work/shards" --output "$work/sae_ddp" --device cuda "${cli[@]}" \
            --eval-frames 0 --quiet
        copy_metrics "$work/sae_ddp" torchrun_train
    else
        skip torchrun_train "NCCL data parallelism needs two GPUs; $gpus here ($mode mode)"
    fi
else
    skip pai_sae_train "sae_train wrote no shards"
fi

echo
cat "$summary"
echo "results: $out"
exit "$failed"
