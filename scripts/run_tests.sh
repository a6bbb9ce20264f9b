#!/usr/bin/env bash
# Run the whole test suite (what `make test` and CI run) inside the activated environment.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
# ci: hypothesis draws the same examples on every run and keeps no database (test/conftest.py);
# the exploratory run is `make fuzz`.
# The slowest tests are listed at the end: the suite's time is watched (CI's limit), and this says where it goes.
python -m pytest -ra --durations=30 --durations-min=5 --hypothesis-profile=ci "$@" test
rc=$?
# pytest exits 5 when nothing was collected: that is a failure here, not a pass.
exit $rc
