"""Shared fixtures: tiny random ACT checkpoints, tiny demo datasets, isolated ROS domains.

Everything is built locally in seconds; nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pai_runner
import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase
from pai_runner import run_pai  # noqa: F401  (the tests' `from conftest import run_pai`)

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


# ------------------------------------------------------------------ hypothesis profiles
# ci:   what `make test` and CI run (scripts/run_tests.sh passes --hypothesis-profile=ci): the
#       examples are derived from each test's name (derandomize), no example database, so a green
#       run stays green and a red one is red again on any machine.
# fuzz: `make fuzz`, the exploratory run: random examples, ten times as many (see
#       helpers/fuzzing.py examples()), failures kept in a database outside the clone and replayed
#       first on the next fuzz run.
# dev:  a plain `pytest` (the default): random examples, hypothesis's usual .hypothesis/ database.
_CACHE = Path(os.environ.get("PAI_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
              / "pai_ros")
# Every profile names its parent and the settings it depends on: hypothesis (6.142, pinned)
# builds a profile registered without a parent on whatever profile is loaded at that moment, so
# a `fuzz` registered while `ci` is loaded comes out derandomized (one CI run saw exactly that).
_DEFAULT = settings.get_profile("default")
settings.register_profile("ci", parent=_DEFAULT, derandomize=True, database=None, print_blob=True)
settings.register_profile("fuzz", parent=_DEFAULT, derandomize=False, max_examples=1000, print_blob=True,
                          database=DirectoryBasedExampleDatabase(str(_CACHE / "hypothesis-fuzz")))
settings.register_profile("dev", parent=_DEFAULT)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ros: needs rclpy and the colcon-built overlay (real DDS)")
    config.addinivalue_line("markers", "slow: takes more than ~20 s (still part of make test)")


def pytest_terminal_summary(terminalreporter) -> None:
    """How the `pai` commands ran (pai_runner.py): a fresh interpreter costs seconds of imports each."""
    for line in pai_runner.summary_lines():
        terminalreporter.write_line(line)


# ------------------------------------------------------------------ ROS isolation

_domain_counter = [0]


@pytest.fixture
def ros_env() -> dict[str, str]:
    """Environment for ROS processes: localhost-only discovery and a domain of this test's own.

    Domain ids are derived from the pytest process id so that parallel runs on one machine do
    not share a domain (0-101 are valid for Fast DDS with default ports; we use 1-100).
    """
    _domain_counter[0] += 1
    domain = 1 + (os.getpid() * 7 + _domain_counter[0]) % 100
    env = dict(os.environ)
    env.update({
        "ROS_DOMAIN_ID": str(domain),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOCALHOST_ONLY": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


# ------------------------------------------------------------------ models and data

@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Build a fixture with one intra-op thread: its float sums then do not depend on the thread
    count the machine or earlier tests left (the tiny SAE's figures changed with OMP_NUM_THREADS)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_act(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ACT for the demo's two cameras and 3-D state/action, saved like a real one."""
    from pai_ros.policy.random_init import save_random_act

    return save_random_act(tmp_path_factory.mktemp("tiny_act"), {"front": (64, 80), "wrist": (64, 80)},
                           state_dim=3, action_dim=3, chunk_size=10, n_action_steps=10)


@pytest.fixture(scope="session")
def tiny_scene():
    from pai_ros.sim.scene import SceneConfig

    return SceneConfig(front_hw=(64, 80), wrist_hw=(64, 80), episode_length=12)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, tiny_scene) -> tuple[Path, str]:
    """A 3-episode demo dataset at 64x80, written with LeRobot's writer."""
    from pai_ros.demo.dataset import DatasetSpec, write_dataset

    spec = DatasetSpec("pai/tiny_demo", num_episodes=3, seed=7)
    root = tmp_path_factory.mktemp("tiny_dataset") / "ds"
    write_dataset(root, spec, tiny_scene, progress=False)
    return root, spec.repo_id


@pytest.fixture(scope="session")
def toy_assets(tmp_path_factory: pytest.TempPathFactory):
    """The whole demo-asset pipeline at toy size: datasets, lerobot-train run, report."""
    from toy_settings import TOY

    from pai_ros.demo.assets import ensure_demo_assets

    return ensure_demo_assets(tmp_path_factory.mktemp("cache"), TOY, progress=False)


def toy_demo_script(toy_assets, body: str) -> str:
    """A Python script for a subprocess (rclpy reads the domain at start) that finds the toy demo
    assets as ``assets`` and then runs ``body``."""
    return ("import sys, json, pathlib\n"
            "from pai_ros.demo.assets import ensure_demo_assets\n"
            "sys.path.insert(0, 'test')\n"
            "from toy_settings import TOY\n"
            f"assets = ensure_demo_assets(pathlib.Path({str(toy_assets.root.parents[1])!r}), TOY, progress=False)\n"
            + body)


@pytest.fixture(scope="session")
def tiny_sae(tiny_act: Path, tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TopK SAE (32 -> 128, k=4) trained on the tiny policy's own encoder tokens."""
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.activations import TokenSelection
    from pai_ros.sae.collect import CollectSettings, collect_activations
    from pai_ros.sae.train import TrainSettings
    from pai_ros.sae.train_output import run_training

    root, _ = tiny_dataset
    work = tmp_path_factory.mktemp("tiny_sae")
    with one_torch_thread():
        runner = activations_runner(tiny_act, "cpu")
        collect_activations(runner, root, [0, 1, 2], work / "acts", CollectSettings(TokenSelection()), progress=False)
        runner.close()
        out, _ = run_training(work / "acts", work / "sae",
                              TrainSettings(k=4, num_features=128, steps=100, batch_size=64),
                              eval_frames=0, progress=False)
    return out
