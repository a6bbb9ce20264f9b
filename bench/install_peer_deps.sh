#!/usr/bin/env bash
# Install the optional SAE peers of bench/sae_peers.py (SAELens, EleutherAI's sparsify) into a
# SEPARATE virtual environment that sees the project's venv (torch, numpy, ...) read-only through
# a .pth file. Their declared dependencies (transformer-lens, transformers 5, datasets, ...)
# would change packages the project pins, so they are installed without dependencies, plus
# the few modules their training code imports.
#
# Usage (with scripts/env.sh sourced):  bash bench/install_peer_deps.sh [VENV_DIR]
# Then:  VENV_DIR/bin/python bench/sae_peers.py --activations DIR   (or bench/bench_sae.py)
# Idempotent: does nothing when both already import there.
set -euo pipefail

TARGET="${1:-${PAI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pai_ros}/bench-deps/peers-venv}"
BASE_PY="${VIRTUAL_ENV:?source scripts/env.sh first (the project venv is the base)}/bin/python"

if [[ -x "$TARGET/bin/python" ]] && "$TARGET/bin/python" -c "import sae_lens, sparsify" 2>/dev/null; then
    echo "SAELens and sparsify already importable in $TARGET"
    exit 0
fi
"$BASE_PY" -m venv --system-site-packages "$TARGET"
site="$("$BASE_PY" -c 'import site; print(site.getsitepackages()[0])')"
"$TARGET/bin/python" -c 'import site; print(site.getsitepackages()[0])' | xargs -I{} sh -c "echo '$site' > {}/pai_project_venv.pth"
"$BASE_PY" -m pip freeze --exclude-editable | grep -v ' @ ' > "$TARGET/constraints.txt"
PIP=("$TARGET/bin/python" -m pip install --quiet)
"${PIP[@]}" --no-deps sae-lens eai-sparsify "transformer-lens>=2.16.1,<4" simple-parsing schedulefree natsort \
    beartype better-abc fancy-einsum typeguard jaxtyping wadler-lindig docstring-parser tenacity "babe>=0.0.7,<0.0.8" \
    plotly-express python-dotenv nltk
# transformers: resolved against the project's pins (huggingface-hub, tokenizers).
"${PIP[@]}" -c "$TARGET/constraints.txt" transformers
"$TARGET/bin/python" -c "import sae_lens, sparsify" && echo "SAELens and sparsify installed in $TARGET"
