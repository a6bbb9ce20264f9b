#!/usr/bin/env bash
# Install the optional comparison package of bench/bench_sae.py: dictionary_learning 0.1.0
# (the TopK SAE trainer of saprmarks/dictionary_learning), without its declared dependencies
# (nnsight, wandb, datasets, umap, ...): the bench loads only its trainer modules, which need
# torch and einops (both in our venv).
#
# Target: ${PAI_CACHE_DIR:-~/.cache/pai_ros}/bench-deps/dictionary_learning-0.1.0 (not the venv).
# Idempotent: does nothing when the package is already there.
set -euo pipefail

VERSION=0.1.0
CACHE="${PAI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pai_ros}"
TARGET="$CACHE/bench-deps/dictionary_learning-$VERSION"
PIP="${PIP:-python -m pip}"

if [[ -f "$TARGET/dictionary_learning/trainers/top_k.py" && -f "$TARGET/.pai-complete" ]]; then
    echo "dictionary_learning $VERSION already installed in $TARGET"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
$PIP download --quiet --no-deps --only-binary=:all: --dest "$tmp/dl" "dictionary-learning==$VERSION"
wheel="$(ls "$tmp"/dl/*.whl)"
rm -rf "$TARGET.partial"
$PIP install --quiet --no-deps --no-compile --target "$TARGET.partial" "$wheel"
touch "$TARGET.partial/.pai-complete"
rm -rf "$TARGET"
mv "$TARGET.partial" "$TARGET"
echo "installed dictionary_learning $VERSION (no dependencies) into $TARGET"
