# pai_ros: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source scripts/env.sh
# Each test file gets its own ROS domain; discovery never leaves this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_LOCALHOST_ONLY ?= 1

.PHONY: help setup demo demo-assets test test-unit colcon-test fuzz build bench bench-deps clean

help:
	@echo "make demo    set up if needed, build the demo assets (dataset + trained ACT), run the live demo into out/demo"
	@echo "make test    set up if needed, then run all tests"
	@echo "make colcon-test  what a ROS user runs: colcon test (the unit tests through ament_cmake_pytest) + colcon test-result"
	@echo "make test-unit  only the tests without ROS processes (what colcon test runs; most of the suite's time)"
	@echo "make fuzz    the exploratory fuzz run: every hypothesis test with 10x the examples, random seed (FUZZ_ARGS=... for pytest)"
	@echo "make setup   create/refresh the venv (pins in requirements.txt) and colcon-build the package"
	@echo "make build   colcon-build the package again (after adding files)"
	@echo "make clean   remove build/ install/ and .pai/ (the cached venv stays)"
	@echo "make bench   run the benchmarks of bench/run_all.py, print one table, write it to bench/RESULTS.md (QUICK=1: a short smoke run)"
	@echo "make bench-deps  install bench_sae.py's optional comparison package (dictionary_learning, no deps)"

# Setup is fast when nothing changed: the venv is keyed by the pins' hash, colcon is incremental.
setup:
	@bash scripts/setup.sh

build: setup

demo: setup
	@$(ENV) && pai demo --output-dir out/demo --overwrite

demo-assets: setup
	@$(ENV) && pai demo-assets

test: setup
	@$(ENV) && bash scripts/run_tests.sh

# The ROS way: colcon test runs the unit tests registered in CMakeLists.txt (ament_cmake_pytest);
# colcon test-result fails when one of them failed (colcon test itself exits 0 either way).
colcon-test: setup
	@$(ENV) && colcon --log-base build/log test --base-paths . --build-base build --install-base install \
		--packages-select pai_ros --event-handlers console_direct+ console_stderr- summary+ status- --ctest-args -V \
		&& colcon test-result --test-result-base build/pai_ros --verbose

# make test draws the same hypothesis examples every time (profile ci); this run explores with
# fresh random ones and keeps what fails in ~/.cache/pai_ros/hypothesis-fuzz (replayed first next time).
fuzz: setup
	@$(ENV) && python -m pytest -q -p no:cacheprovider --hypothesis-profile=fuzz --hypothesis-show-statistics \
		-m hypothesis $(FUZZ_ARGS) test

test-unit: setup
	@$(ENV) && python -m pytest -q -p no:cacheprovider --hypothesis-profile=ci -m "not ros and not slow" test

# The comparison package is optional: without it bench_sae.py says so and skips that figure.
bench: setup
	@$(ENV) && (bash bench/install_compare_deps.sh || echo "make bench: dictionary_learning not installed; bench_sae skips the comparison")
	@$(ENV) && python bench/run_all.py $(if $(QUICK),--quick)

# dictionary_learning 0.1.0 without its declared dependencies, into the cache (not the venv).
bench-deps: setup
	@$(ENV) && bash bench/install_compare_deps.sh

clean:
	rm -rf build install log .pai
