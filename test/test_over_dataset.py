"""Running a policy over recorded episodes with a frame stride: skipped frames are neither decoded nor run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pai_ros.data.episodes import iter_episode, iter_picked_frames, pick_evenly, read_info, value_names
from pai_ros.policy.capture import CaptureConfig
from pai_ros.policy.loading import load_act_policy
from pai_ros.policy.over_dataset import run_episode
from pai_ros.policy.runner import PolicyRunner


def test_a_stride_yields_the_same_frames_as_filtering_every_frame(tiny_dataset) -> None:
    root, _ = tiny_dataset
    info = read_info(root)
    every = list(iter_episode(root, 1, info))
    strided = list(iter_episode(root, 1, info, frame_stride=5))
    assert [f.frame_index for f in strided] == [0, 5, 10] == [f.frame_index for f in every if f.frame_index % 5 == 0]
    for s in strided:
        full = every[s.frame_index]
        assert s.episode_index == 1 and s.timestamp == full.timestamp
        np.testing.assert_array_equal(s.state, full.state)
        for cam, image in full.images.items():
            np.testing.assert_array_equal(s.images[cam], image)


def test_picked_frames_span_the_data_and_come_in_the_episodes_order(tiny_dataset) -> None:
    # Subsamples (action recovery, feature effects, faithfulness, the contact sheet) keep the first
    # and last frame and spread the rest evenly; no more than asked, and all when there are fewer.
    assert pick_evenly(10, 4) == [0, 3, 6, 9] and pick_evenly(3, 8) == [0, 1, 2]
    assert pick_evenly(0, 4) == [] and pick_evenly(5, 0) == []
    root, _ = tiny_dataset
    picked = {(1, 0), (1, 7), (0, 3), (0, 5)}
    frames = [(f.episode_index, f.frame_index) for f in iter_picked_frames(root, [1, 0], picked)]
    assert frames == [(1, 0), (1, 7), (0, 3), (0, 5)]  # episode order as given, frame order within
    assert not list(iter_picked_frames(root, [0], {(1, 2)}))  # only the episodes given


def test_run_episode_runs_the_policy_only_on_the_kept_frames(tiny_act: Path, tiny_dataset) -> None:
    root, _ = tiny_dataset
    runner = PolicyRunner(load_act_policy(tiny_act, "cpu"), "replan", CaptureConfig(cross_attention=False))
    torch.manual_seed(0)
    every = {f.frame_index: t.action.copy() for f, t in run_episode(runner, root, 0, progress=False)}
    steps = []
    real_step = runner.step
    runner.step = lambda obs: steps.append(1) or real_step(obs)  # count the forwards, keep the real runner
    kept = [(f.frame_index, t.action) for f, t in run_episode(runner, root, 0, progress=False, frame_stride=4)]
    assert [i for i, _ in kept] == [0, 4, 8] and len(steps) == 3
    for i, action in kept:  # replan: a frame's tick does not depend on the ticks before it
        np.testing.assert_allclose(action, every[i], rtol=1e-5, atol=1e-6)


def test_a_stride_is_refused_where_ticks_depend_on_earlier_ticks(tiny_act: Path, tiny_dataset) -> None:
    root, _ = tiny_dataset
    runner = PolicyRunner(load_act_policy(tiny_act, "cpu"), "queue", CaptureConfig(cross_attention=False))
    with pytest.raises(ValueError, match="replan mode"):
        next(run_episode(runner, root, 0, progress=False, frame_stride=2))
    with pytest.raises(ValueError, match="frame_stride must be at least 1"):
        next(iter_episode(root, 0, frame_stride=0))


def test_value_names_come_from_info_json_or_are_numbered() -> None:
    # The replay node names joint_states and recorded_action after them: a policy matches joints by name.
    assert value_names({"shape": [2], "names": ["x", "y"]}, "joint") == ["x", "y"]
    assert value_names({"shape": [2], "names": {"motors": ["a", "b"]}}, "joint") == ["a", "b"]  # nested per axis
    assert value_names({"shape": [3], "names": ["x", "y"]}, "joint") == ["joint_0", "joint_1", "joint_2"]
    assert value_names({"shape": [2], "names": None}, "action") == ["action_0", "action_1"]
    assert value_names(None, "env") == []
