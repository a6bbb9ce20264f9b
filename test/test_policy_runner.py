"""The runner's actions equal an unmodified LeRobot ACT's, in every mode's own semantics."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pai_ros.policy.errors import ObservationError
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.observation import Observation
from pai_ros.policy.random_init import save_random_act
from pai_ros.policy.runner import PolicyRunner

CAMS = {"front": (64, 80), "wrist": (64, 80)}


def _observations(n: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    return [Observation({c: rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for c, hw in CAMS.items()},
                        rng.normal(size=3).astype(np.float32)) for _ in range(n)]


def _reference_actions(ckpt: Path, observations: list[Observation]) -> list[np.ndarray]:
    """What LeRobot's own select_action returns, fed the same observations."""
    loaded = load_act_policy(ckpt, "cpu")
    loaded.policy.reset()
    out = []
    for obs in observations:
        batch = {f"observation.images.{c}": torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
                 for c, img in obs.images.items()}
        batch["observation.state"] = torch.from_numpy(obs.state)
        with torch.inference_mode():
            action = loaded.policy.select_action(loaded.preprocessor(batch))
        out.append(loaded.postprocessor(action).numpy()[0])
    return out


@pytest.fixture(scope="module")
def queue_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_act(tmp_path_factory.mktemp("q"), CAMS, chunk_size=8, n_action_steps=5, seed=3)


@pytest.fixture(scope="module")
def ensemble_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_act(tmp_path_factory.mktemp("e"), CAMS, chunk_size=8, n_action_steps=1,
                           temporal_ensemble_coeff=0.01, seed=4)


def test_queue_mode_is_bit_identical_to_select_action_over_several_chunks(queue_ckpt: Path) -> None:
    observations = _observations(17)  # 3 full chunks of 5 and a partial one
    expected = _reference_actions(queue_ckpt, observations)
    runner = PolicyRunner(load_act_policy(queue_ckpt, "cpu"), "queue")
    results = [runner.step(o) for o in observations]
    for t, (res, ref) in enumerate(zip(results, expected)):
        assert np.array_equal(res.action, ref), f"tick {t}: {res.action} != {ref}"
    # Maps stay live: the model ran every tick, and the extra runs are counted as wasted.
    assert all(r.ran_model and r.capture is not None for r in results)
    assert runner.stats.forwards == 17 and runner.stats.wasted_forwards == 17 - 4
    assert [r.executed_query for r in results][:7] == [0, 1, 2, 3, 4, 0, 1]
    # The executed capture is the one of the chunk the action came from.
    assert results[3].executed_capture is results[0].capture


def test_ensemble_mode_is_bit_identical_and_wastes_nothing(ensemble_ckpt: Path) -> None:
    observations = _observations(12, seed=1)
    expected = _reference_actions(ensemble_ckpt, observations)
    runner = PolicyRunner(load_act_policy(ensemble_ckpt, "cpu"), "auto")
    assert runner.mode == "ensemble"
    for t, obs in enumerate(observations):
        assert np.array_equal(runner.step(obs).action, expected[t]), f"tick {t}"
    assert runner.stats.forwards == 12 and runner.stats.wasted_forwards == 0
    assert runner.stats.wasted_per_action == 0.0


def test_chunk_mode_runs_once_per_chunk_with_the_same_actions(queue_ckpt: Path) -> None:
    observations = _observations(11, seed=2)
    expected = _reference_actions(queue_ckpt, observations)
    runner = PolicyRunner(load_act_policy(queue_ckpt, "cpu"), "chunk")
    results = [runner.step(o) for o in observations]
    assert all(np.array_equal(r.action, e) for r, e in zip(results, expected))
    assert [r.ran_model for r in results] == [t % 5 == 0 for t in range(11)]
    assert runner.stats.forwards == 3 and runner.stats.wasted_forwards == 0
    assert results[2].capture is None and results[2].executed_capture is results[0].capture


def test_replan_mode_executes_the_first_action_of_each_fresh_chunk(queue_ckpt: Path) -> None:
    runner = PolicyRunner(load_act_policy(queue_ckpt, "cpu"), "replan")
    for obs in _observations(3, seed=5):
        res = runner.step(obs)
        assert np.array_equal(res.action, res.chunk[0]) and res.executed_query == 0
    assert runner.stats.forwards == 3 and runner.stats.wasted_forwards == 0


def test_a_gradient_pass_out_of_memory_still_gives_the_action(queue_ckpt: Path, monkeypatch) -> None:
    # The gradient heatmap's graph needs far more memory than the action; when the GPU runs out in
    # that pass, the action comes from a plain forward pass (the same numbers) and only the map is lost.
    from pai_ros.attention.explainers import make_explainer

    obs = _observations(1, seed=6)[0]
    expected = PolicyRunner(load_act_policy(queue_ckpt, "cpu"), "replan").step(obs).action
    runner = PolicyRunner(load_act_policy(queue_ckpt, "cpu"), "replan")
    runner.explainer = make_explainer(runner.policy, "input_gradient").attach()
    model, forward = runner.policy.model, runner.policy.model.forward

    def forward_without_memory_for_gradients(*args, **kwargs):
        if torch.is_grad_enabled():
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward_without_memory_for_gradients)
    result = runner.step(obs)
    np.testing.assert_array_equal(result.action, expected)
    assert result.capture.explanation_error.startswith("input_gradient ran out of memory; this action came from")
    assert "input_gradient" not in result.capture.explanations


def test_reset_starts_a_new_episode(queue_ckpt: Path) -> None:
    runner = PolicyRunner(load_act_policy(queue_ckpt, "cpu"), "queue")
    obs = _observations(3)
    first = [runner.step(o).action for o in obs]
    runner.reset()
    assert all(np.array_equal(a, runner.step(o).action) for a, o in zip(first, obs))


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o.images.pop("wrist"), "camera 'wrist' is missing"),
    (lambda o: o.images.__setitem__("front", o.images["front"].astype(np.float32)), "expected uint8 RGB"),
    (lambda o: o.images.__setitem__("front", o.images["front"][:, :, 0]), "expected an HxWx3 RGB image"),
    (lambda o: o.images.__setitem__("front", np.zeros((32, 80, 3), np.uint8)),
     "the policy was trained on 64x80 images \\(HxW\\), the input is 32x80"),
    (lambda o: setattr(o, "state", np.array([0.0, np.nan, 1.0], np.float32)), "NaN or inf"),
    (lambda o: setattr(o, "state", np.zeros(4, np.float32)),
     r"state: the policy takes 3 values, the input has shape \(4,\)"),
    (lambda o: setattr(o, "state", None), "needs a 3-D state"),
])
def test_bad_observations_are_refused_before_any_action(queue_ckpt: Path, mutate, message: str) -> None:
    runner = PolicyRunner(load_act_policy(queue_ckpt, "cpu"), "queue")
    obs = _observations(1)[0]
    mutate(obs)
    with pytest.raises(ObservationError, match=message):
        runner.step(obs)
    assert runner.stats.ticks == 0 and runner.stats.forwards == 0


def _info(front: list[int], state: list[int] | None, names: list[str] | None = None) -> dict:
    image = {"dtype": "video", "shape": [64, 80, 3], "names": ["height", "width", "channels"]}
    features = {"observation.images.front": {"dtype": "video", "shape": front, "names": names},
                "observation.images.wrist": image}
    if state is not None:
        features["observation.state"] = {"dtype": "float32", "shape": state}
    return {"features": features}


@pytest.mark.parametrize("info, message", [
    (_info([64, 80, 3], [3]), None),
    (_info([3, 64, 80], [3]), None),  # channels first, no names
    (_info([3, 80, 3], [3]), None),  # which axis is which is not clear: left to the first frame
    (_info([32, 80, 3], [3], ["height", "width", "channels"]), "camera 'front' of ds is 32x80"),
    (_info([3, 32, 80], [3]), "camera 'front' of ds is 32x80 \\(HxW\\); the policy was trained on 64x80"),
    (_info([64, 80, 3], [4]), "observation.state of ds has 4 values; the policy takes 3"),
    (_info([64, 80, 3], None), "needs a 3-D state \\(observation.state\\), but ds has none"),
    ({"features": {"observation.images.front": {"dtype": "video", "shape": [64, 80, 3]}}},
     "needs camera\\(s\\) wrist, but ds has front"),
    (_info(["sixty-four", 80, 3], [3], ["height", "width", "channels"]), "ds/meta/info.json is damaged"),
])
def test_a_dataset_that_cannot_fit_the_policy_is_refused_from_its_info(queue_ckpt: Path, info, message) -> None:
    # Before any frame is decoded: calibrate's second dataset would otherwise fail after the first pass.
    from pai_ros.errors import UserError
    from pai_ros.policy.over_dataset import check_dataset_fits

    runner = PolicyRunner(load_act_policy(queue_ckpt, "cpu"), "queue")
    if message is None:
        check_dataset_fits(runner, info, Path("ds"))
    else:
        with pytest.raises(UserError, match=message):
            check_dataset_fits(runner, info, Path("ds"))


def test_unknown_mode(queue_ckpt: Path) -> None:
    from pai_ros.errors import UserError

    with pytest.raises(UserError, match="unknown runner mode 'fast'"):
        PolicyRunner(load_act_policy(queue_ckpt, "cpu"), "fast")
