"""ACT checkpoints written before LeRobot 0.4 (statistics inside model.safetensors) load and act
exactly like the 0.4 checkpoint they were made from and like a copy migrated by LeRobot's own
script, without anything being written into their directory; broken ones are refused in one line.

The old checkpoints are built here from 0.4 ones (test/helpers/hub_layout.py), with distinct
statistics per feature so that a normaliser that silently did nothing would change the actions.
Actions are compared bit for bit (torch.equal): the same float32 weights and statistics go
through the same operations on the same CPU, so any difference is a real one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers.hub_layout import make_pre_04_checkpoint, randomise_statistics, tree_state
from pai_ros.errors import UserError
from pai_ros.policy.loading import load_act_policy

CAMERAS = {"front": (64, 80), "wrist": (64, 80)}


def _new_checkpoint(out: Path, cameras: dict, **kwargs) -> Path:
    from pai_ros.policy.random_init import save_random_act

    ckpt = save_random_act(out, cameras, state_dim=3, action_dim=3, **kwargs)
    randomise_statistics(ckpt, seed=3)
    return ckpt


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 0.4 checkpoint (state normalised MIN_MAX, the rest MEAN_STD) and its pre-0.4 twin."""
    from lerobot.configs.types import NormalizationMode as M

    work = tmp_path_factory.mktemp("old_ckpt")
    new = _new_checkpoint(work / "new", CAMERAS, normalization_mapping={
        "VISUAL": M.MEAN_STD, "STATE": M.MIN_MAX, "ACTION": M.MEAN_STD})
    return new, make_pre_04_checkpoint(new, work / "old")


def _observations(loaded, n: int = 3, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    obs = []
    for _ in range(n):
        o = {k: torch.rand(tuple(ft.shape), generator=g) for k, ft in loaded.config.input_features.items()
             if ft.type.value == "VISUAL"}
        for k, ft in loaded.config.input_features.items():
            if ft.type.value in ("STATE", "ENV"):
                o[k] = torch.randn(tuple(ft.shape), generator=g)
        obs.append(o)
    return obs


def _actions(loaded, observations) -> torch.Tensor:
    """The whole predicted chunk, un-normalised, for each observation (what the robot would get)."""
    out = []
    with torch.inference_mode():
        for o in observations:
            out.append(loaded.postprocessor(loaded.policy.predict_action_chunk(loaded.preprocessor(dict(o)))))
    return torch.stack(out)


def test_pre_04_checkpoint_acts_exactly_like_the_original(checkpoints) -> None:
    new, old = checkpoints
    assert not list(old.glob("policy_*processor*")), "the old checkpoint must have no processor files"
    before = tree_state(old)
    migrated = load_act_policy(old, "cpu")
    original = load_act_policy(new, "cpu")
    assert tree_state(old) == before, "loading wrote into the checkpoint directory"
    assert migrated.migrated and not original.migrated
    obs = _observations(original)
    expected = _actions(original, obs)
    assert torch.equal(_actions(migrated, obs), expected)
    # The statistics really act: without them the same network gives other actions.
    raw = torch.stack([original.policy.predict_action_chunk(original.preprocessor(dict(o))) for o in obs]).detach()
    assert not torch.allclose(raw, expected, atol=1e-3)


def _migrate_with_lerobots_script(old: Path, out: Path) -> None:
    # LeRobot's migration script, run as it is, except for its model card's YAML check, which
    # posts the card to huggingface.co (after the model and processors are saved); nothing
    # else of it touches the network for a local directory.
    code = ("import sys, huggingface_hub.repocard as card\n"
            "card.RepoCard.validate = lambda self, repo_type=None: None\n"
            "from lerobot.processor import migrate_policy_normalization as m\n"
            f"sys.argv = ['migrate', '--pretrained-path', {str(old)!r}, '--output-dir', {str(out)!r}]\n"
            "m.main()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.slow  # a second Python process imports LeRobot and saves a checkpoint
def test_in_memory_migration_equals_lerobots_migration_script(checkpoints, tmp_path: Path) -> None:
    _, old = checkpoints
    _migrate_with_lerobots_script(old, tmp_path / "migrated")
    assert (tmp_path / "migrated" / "policy_preprocessor.json").is_file()
    on_disk = load_act_policy(tmp_path / "migrated", "cpu")
    in_memory = load_act_policy(old, "cpu")
    assert not on_disk.migrated
    obs = _observations(on_disk, seed=1)
    assert torch.equal(_actions(in_memory, obs), _actions(on_disk, obs))


def test_underscored_names_and_environment_state_keep_their_statistics(tmp_path: Path) -> None:
    # Buffer names turn '.' into '_'; LeRobot's extractor turns every '_' back into '.', so
    # 'observation.images.cam_high' and 'observation.environment_state' need matching by name.
    from lerobot.configs.types import NormalizationMode as M

    new = _new_checkpoint(tmp_path / "new", {"cam_high": (64, 80)}, env_state_dim=2, normalization_mapping={
        "VISUAL": M.MEAN_STD, "STATE": M.MEAN_STD, "ENV": M.MEAN_STD, "ACTION": M.MEAN_STD})
    old = make_pre_04_checkpoint(new, tmp_path / "old")
    keys = load_file(str(old / "model.safetensors")).keys()
    assert "normalize_inputs.buffer_observation_images_cam_high.mean" in keys
    assert "normalize_inputs.buffer_observation_environment_state.std" in keys
    original = load_act_policy(new, "cpu")
    obs = _observations(original, seed=2)
    assert torch.equal(_actions(load_act_policy(old, "cpu"), obs), _actions(original, obs))


def _rewrite_weights(old: Path, tmp_path: Path, change) -> Path:
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(old, ckpt)
    state = load_file(str(ckpt / "model.safetensors"))
    change(state)
    save_file(state, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    return ckpt


def _drop(prefix: str):
    def change(state: dict) -> None:
        for k in [k for k in state if k.startswith(prefix)]:
            del state[k]
    return change


def _set_inf(key: str):
    def change(state: dict) -> None:
        state[key] = torch.full_like(state[key], torch.inf)  # how LeRobot < 0.4 initialised unset buffers
    return change


@pytest.mark.parametrize("case, needle", [
    ("action_statistics_missing", "has no normalisation statistics for action (MEAN_STD needs mean, std); "
                                  "refusing to run it un-normalised"),
    ("state_statistics_missing", "has no normalisation statistics for observation.state (MIN_MAX needs min, max)"),
    ("statistics_never_set", "the 'max' statistics of observation.state are not finite"),
    ("no_statistics_at_all", "is incomplete: it has neither policy_preprocessor.json nor policy_postprocessor.json "
                             "(LeRobot >= 0.4) nor normalisation statistics in model.safetensors (LeRobot < 0.4)"),
    ("weights_missing", "do not match config.json"),
])
def test_broken_old_checkpoints_are_refused_in_one_line(case: str, needle: str, checkpoints, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    _, old = checkpoints
    change = {
        "action_statistics_missing": lambda s: [_drop(p)(s) for p in ("normalize_targets.buffer_action.",
                                                                       "unnormalize_outputs.buffer_action.")],
        "state_statistics_missing": _drop("normalize_inputs.buffer_observation_state."),
        "statistics_never_set": _set_inf("normalize_inputs.buffer_observation_state.max"),
        "no_statistics_at_all": lambda s: [_drop(p)(s) for p in ("normalize_inputs.", "normalize_targets.",
                                                                  "unnormalize_outputs.")],
        "weights_missing": _drop("model.encoder.layers.0."),
    }[case]
    ckpt = _rewrite_weights(old, tmp_path, change)
    with pytest.raises(UserError) as info:
        load_act_policy(ckpt, "cpu")
    assert needle in str(info.value) and "\n" not in str(info.value)
    # An old config has no device: LeRobot's four lines guessing one came before the refusal.
    assert not [r.getMessage() for r in caplog.records if "Switching to" in r.getMessage()
                or "No accelerated backend" in r.getMessage()]


def test_config_before_lerobot_01_is_named(checkpoints, tmp_path: Path) -> None:
    import json
    import shutil

    _, old = checkpoints
    ckpt = tmp_path / "ckpt"
    shutil.copytree(old, ckpt)
    (ckpt / "config.json").write_text(json.dumps({"chunk_size": 10, "input_shapes": {"observation.state": [3]}}))
    with pytest.raises(UserError, match="format of LeRobot before 0.1"):
        load_act_policy(ckpt, "cpu")
