"""policy_node with an SAE, as a real process: live FeatureActivations, feature heatmaps, the OOD
flag on the message and in /diagnostics, and a dimension mismatch refused at start."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ros_processes import Probe, Proc
from safetensors.torch import save_file
from test_policy_node import diag, start_node, start_robot

pytestmark = pytest.mark.ros
FEATURE = 3
TOPICS = ["features:FeatureActivations", f"features/feature_{FEATURE}/front/heatmap:Image", "action:JointState",
          "/diagnostics:DiagnosticArray"]


def sae_id(sae: Path) -> str:
    from pai_ros.sae.model import content_id

    return content_id(sae)


def test_features_are_published_every_tick(tiny_act: Path, tiny_sae: Path, ros_env: dict) -> None:
    probe = Probe(TOPICS, ros_env)
    node = start_node(tiny_act, ros_env, "-p", f"sae_path:={tiny_sae}", "-p", "features_top_n:=5",
                      "-p", f"feature_heatmaps:=[{FEATURE}]")
    robot = start_robot(ros_env)
    try:
        assert "SAE " in "\n".join(node.lines) and "no OOD calibration" in "\n".join(node.lines)
        msg = probe.wait_for(lambda m: m["topic"] == "features", 60)
        assert msg["sae_id"] == sae_id(tiny_sae) and msg["num_features"] == 128
        assert msg["num_tokens"] == 14  # latent + state + two 2x3 camera grids
        assert 1 <= len(msg["feature_indices"]) <= 5 and len(msg["activations"]) == len(msg["feature_indices"])
        assert msg["activations"] == sorted(msg["activations"], reverse=True) and msg["activations"][-1] > 0
        assert all(0 < c <= 14 for c in msg["token_counts"]) and all(i < 128 for i in msg["feature_indices"])
        assert msg["mean_l0"] == pytest.approx(4.0)  # TopK with k=4
        assert msg["reconstruction_error"] > 0 and msg["is_ood"] is False
        assert msg["ood_threshold"] != msg["ood_threshold"]  # NaN: not calibrated
        # Joined with the action it explains by stamp.
        action = probe.wait_for(lambda m: m["topic"] == "action" and m["stamp_ns"] == msg["stamp_ns"], 10)
        assert action["stamp_ns"] > 0
        heat = probe.wait_for(lambda m: m["topic"] == f"features/feature_{FEATURE}/front/heatmap", 30)
        assert (heat["encoding"], heat["height"], heat["width"]) == ("rgb8", 64, 80)
        d = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and "sae_id" in diag(m)["values"], 30)
        assert diag(d)["values"]["sae_id"] == msg["sae_id"] and diag(d)["values"]["ood_threshold"] == "none"
    finally:
        for p in (robot, node, probe):
            p.stop()


def test_ood_ticks_are_flagged_and_warned_but_still_act(tiny_act: Path, tiny_sae: Path, ros_env: dict,
                                                        tmp_path: Path) -> None:
    sae = tmp_path / "sae"
    shutil.copytree(tiny_sae, sae)
    # A threshold every frame exceeds: each tick is out of distribution.
    (sae / "ood.json").write_text(json.dumps({"sae_id": sae_id(sae), "threshold": 1e-9, "rule": "p99"}))
    probe = Probe(TOPICS, ros_env)
    node = start_node(tiny_act, ros_env, "-p", f"sae_path:={sae}")
    robot = start_robot(ros_env)
    try:
        msg = probe.wait_for(lambda m: m["topic"] == "features", 60)
        assert msg["is_ood"] is True and msg["ood_threshold"] == pytest.approx(1e-9)
        warn = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and diag(m)["level"] == 1, 30)
        assert "out of distribution" in diag(warn)["message"] and int(diag(warn)["values"]["ood_ticks"]) > 0
        # The flag informs the operator; the policy's actions are unchanged and keep flowing.
        probe.wait_for(lambda m: m["topic"] == "action", 30)
    finally:
        for p in (robot, node, probe):
            p.stop()


def test_the_camera_state_score_is_published_beside_the_flag(tiny_act: Path, tiny_sae: Path, tiny_dataset,
                                                            ros_env: dict, tmp_path: Path) -> None:
    """Calibrated by the real `calibrate` (the tiny policy takes the robot state): the node publishes
    whether the cameras agree with the joints on every features message and in /diagnostics."""
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.calibrate import calibrate, write_calibration
    from pai_ros.sae.model import load_sae

    sae = tmp_path / "sae"
    shutil.copytree(tiny_sae, sae)
    runner = activations_runner(tiny_act, "cpu")
    loaded = load_sae(sae)
    write_calibration(loaded, calibrate(runner, loaded, tiny_dataset[0], [0, 1, 2], progress=False))
    runner.close()
    threshold = json.loads((sae / "ood.json").read_text())["camera_state"]["threshold"]
    probe = Probe(TOPICS, ros_env)
    node = start_node(tiny_act, ros_env, "-p", f"sae_path:={sae}")
    robot = start_robot(ros_env)
    try:
        assert "camera-state threshold" in "\n".join(node.lines)
        msg = probe.wait_for(lambda m: m["topic"] == "features", 60)
        assert msg["camera_state_score"] >= 0 and msg["camera_state_threshold"] == pytest.approx(threshold, rel=1e-6)
        # Each camera's own score rides along, named, and the frame's score is their mean.
        cameras = list(json.loads((sae / "ood.json").read_text())["camera_state"]["regressions"])
        assert msg["camera_state_cameras"] == cameras and len(cameras) >= 2
        assert msg["camera_state_score"] == pytest.approx(np.mean(msg["camera_state_camera_scores"]), rel=1e-5)
        # The first diagnostics may go out before the first tick: wait for one after it.
        d = probe.wait_for(lambda m: m["topic"] == "/diagnostics"
                           and diag(m)["values"].get("camera_state_score", "nan") != "nan", 30)
        values = diag(d)["values"]
        assert float(values["camera_state_threshold"]) == pytest.approx(threshold, rel=1e-4)
        assert float(values["camera_state_score"]) >= 0 and "camera_state_problem" not in values
        assert all(float(values[f"camera_state_score_{c}"]) >= 0 for c in cameras)
    finally:
        for p in (robot, node, probe):
            p.stop()


def test_sae_of_another_width_is_refused_at_start(tiny_act: Path, ros_env: dict, tmp_path: Path) -> None:
    sae = tmp_path / "sae16"
    sae.mkdir()
    (sae / "cfg.json").write_text(json.dumps({"d_in": 16, "d_sae": 64, "architecture": "topk", "k": 4}))
    save_file({"W_enc": torch.zeros(16, 64), "W_dec": torch.zeros(64, 16), "b_enc": torch.zeros(64),
               "b_dec": torch.zeros(16)}, str(sae / "sae_weights.safetensors"))
    node = Proc([sys.executable, "-m", "pai_ros.ros.policy_node", "--ros-args", "-p", f"policy_path:={tiny_act}",
                 "-p", f"sae_path:={sae}"], ros_env, "policy_node")
    assert node.popen.wait(timeout=90) == 1
    node.stop()
    errors = [line for line in node.lines if "error" in line.lower()]
    assert len(errors) == 1 and "reads 16-dim activations but the policy's encoder outputs 32-dim" in errors[0], \
        node.lines
    assert not any("Traceback" in line for line in node.lines)
