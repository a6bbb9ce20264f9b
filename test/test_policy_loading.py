"""Loading ACT checkpoints offline: the tiny random ACT works, bad checkpoints fail clearly."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import run_pai  # noqa: F401  (keeps conftest importable for helpers)
from pai_ros.errors import UserError
from pai_ros.policy.loading import load_act_policy, resolve_checkpoint_dir


def test_tiny_act_loads_offline_and_acts(tiny_act: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Any attempt to reach a hub would fail loudly here.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_act_policy(tiny_act, "cpu")
    assert loaded.camera_names == ["front", "wrist"]
    assert loaded.config.pretrained_backbone_weights is None
    obs = {"observation.state": torch.rand(3),
           "observation.images.front": torch.rand(3, 64, 80),
           "observation.images.wrist": torch.rand(3, 64, 80)}
    with torch.inference_mode():
        action = loaded.postprocessor(loaded.policy.select_action(loaded.preprocessor(obs)))
        chunk = loaded.policy.predict_action_chunk(loaded.preprocessor(obs))
    assert action.shape == (1, 3) and torch.isfinite(action).all()
    assert chunk.shape == (1, 10, 3)


def test_loading_prints_nothing_to_stdout(tiny_act: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # stdout carries a command's results (`P=$(pai demo-assets --print-dir)`); LeRobot's
    # from_pretrained prints "Loading weights from local directory" there.
    load_act_policy(tiny_act, "cpu")
    assert capsys.readouterr().out == ""


def test_training_output_dir_is_accepted(tiny_act: Path, tmp_path: Path) -> None:
    """Every level of what lerobot-train writes: run dir, checkpoints/, a step, last, pretrained_model."""
    run = tmp_path / "run"
    step = run / "checkpoints" / "005000"
    shutil.copytree(tiny_act, step / "pretrained_model")
    (run / "checkpoints" / "last").symlink_to("005000")
    want = run / "checkpoints" / "last" / "pretrained_model"
    for given in (run, run / "checkpoints", run / "checkpoints" / "last"):
        assert resolve_checkpoint_dir(given) == want, given
    assert resolve_checkpoint_dir(step) == step / "pretrained_model"
    assert load_act_policy(run / "checkpoints", "cpu").path == want
    # A copy that lost the `last` symlink: the steps that have a model are named.
    (run / "checkpoints" / "last").unlink()
    with pytest.raises(UserError, match=r"checkpoints/last/pretrained_model/config.json is missing; steps that "
                                        r"have one: 005000; pass"):
        resolve_checkpoint_dir(run / "checkpoints")


def _copy(tiny_act: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_act, dst)
    return dst


def test_the_policy_is_fingerprinted_once_from_the_weights_it_loaded(tiny_act: Path, tmp_path: Path) -> None:
    # A live node checks each SAE it reloads against the policy: hashing a real checkpoint's weights
    # every time stalled its ticks, and a file changed on disk since is not the policy running.
    from pai_ros.policy.loading import policy_fingerprint

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_act, ckpt)
    loaded = load_act_policy(ckpt, "cpu")
    first = loaded.fingerprint
    assert first == policy_fingerprint(tiny_act)
    (ckpt / "model.safetensors").unlink()
    assert loaded.fingerprint == first


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_act_policy(tmp_path / "nope", "cpu")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a LeRobot checkpoint"):
        load_act_policy(tmp_path, "cpu")


def test_missing_weights(tiny_act: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_act, tmp_path)
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(UserError, match="incomplete: missing model.safetensors"):
        load_act_policy(ckpt, "cpu")


def test_missing_normalizer_state(tiny_act: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_act, tmp_path)
    next(ckpt.glob("policy_preprocessor_*normalizer*.safetensors")).unlink()
    with pytest.raises(UserError, match="policy_preprocessor.json needs"):
        load_act_policy(ckpt, "cpu")


def test_non_act_policy(tiny_act: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_act, tmp_path)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["type"] = "diffusion"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="'diffusion' policy; pai_ros supports ACT"):
        load_act_policy(ckpt, "cpu")


def test_corrupt_config_json(tiny_act: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_act, tmp_path)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_act_policy(ckpt, "cpu")


def test_corrupt_weights(tiny_act: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_act, tmp_path)
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="safetensors"):
        load_act_policy(ckpt, "cpu")


def test_weights_of_another_architecture(tiny_act: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_act, tmp_path)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["dim_model"] = 48  # the saved weights are for 32
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="do not match"):
        load_act_policy(ckpt, "cpu")


def test_unavailable_device(tiny_act: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(UserError, match="CUDA is not available"):
        load_act_policy(tiny_act, "cuda")


# ------------------------------------------------------------------ configs from a newer LeRobot


def _with_config(tiny_act: Path, tmp_path: Path, **fields: object) -> Path:
    ckpt = _copy(tiny_act, tmp_path)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(fields)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    return ckpt


def test_newer_config_field_is_named_with_the_installed_lerobot(tiny_act: Path, tmp_path: Path) -> None:
    import lerobot

    # LeRobot 0.6 writes `pretrained_revision` into every policy config; 0.4.4 has no such field.
    ckpt = _with_config(tiny_act, tmp_path, pretrained_revision=None)
    with pytest.raises(UserError) as info:
        load_act_policy(ckpt, "cpu")
    message = str(info.value)
    v = lerobot.__version__
    assert message.endswith(f"has pretrained_revision, unknown to LeRobot {v} (installed here; pai_ros needs that "
                            f"version: its hooks read its ACT): remove those fields from config.json, or train the "
                            f"policy again with LeRobot {v}")
    assert "upgrade" not in message  # a newer LeRobot in pai_ros's environment breaks pai_ros
    assert "\n" not in message


@pytest.mark.parametrize("card", [
    "## Training Configuration\n\n| Setting | Value |\n| --- | --- |\n| Training steps | 100000 |\n"
    "| LeRobot version | 0.6.1 |\n",
    "## Model Details\n\n- **License:** apache-2.0\n- **LeRobot version:** 0.6.1\n",
    "## Model Details\n\n- **LeRobot version**: `0.6.1`\n",
], ids=["table", "list", "code"])
def test_newer_config_names_the_lerobot_that_wrote_it(card: str, tiny_act: Path, tmp_path: Path) -> None:
    # LeRobot 0.6's model card (README.md) names its version in a table row or a list item.
    ckpt = _with_config(tiny_act, tmp_path, pretrained_revision=None, some_future_option=3)
    (ckpt / "README.md").write_text(card)
    with pytest.raises(UserError) as info:
        load_act_policy(ckpt, "cpu")
    message = str(info.value)
    assert "has pretrained_revision, some_future_option, unknown to LeRobot" in message
    assert "its hooks read its ACT); a newer LeRobot wrote it (0.6.1, per its README.md): remove those" in message
    assert "upgrade" not in message


@pytest.mark.parametrize("fields, named", [
    ({"normalization_mapping": {"VISUAL": "MEAN_STD", "STATE": "QUANTILE5", "ACTION": "MEAN_STD"}},
     "normalization_mapping.STATE=QUANTILE5"),
    ({"output_features": {"action": {"type": "JOINT_TORQUE", "shape": [3]}}}, "output_features.action.type=JOINT_TORQUE"),
])
def test_newer_config_values_are_named(fields: dict, named: str, tiny_act: Path, tmp_path: Path) -> None:
    import lerobot

    ckpt = _with_config(tiny_act, tmp_path, lerobot_version="0.7.0", **fields)
    with pytest.raises(UserError) as info:
        load_act_policy(ckpt, "cpu")
    assert f"has lerobot_version, {named}, unknown to LeRobot" in str(info.value)
    # A value this LeRobot lacks changes what the network reads or predicts: no edit makes it usable.
    assert str(info.value).endswith(f"a newer LeRobot wrote it (0.7.0, per its config.json): train the policy "
                                    f"again with LeRobot {lerobot.__version__}")
