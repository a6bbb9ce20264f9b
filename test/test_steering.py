"""Feature steering: the math at the SAE's site, the live tick with steering, and the ~/steer service.

Unchanged features leave the actions bit-identical; the delta form equals "reconstruction with
changed features plus the SAE's error term"; requests out of bounds are refused in one line; a
steering expires on the tick clock; every steered tick says so (message fields, /diagnostics).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pai_ros.errors import UserError
from pai_ros.live import Level, LiveConfig, LiveTick, Rejection, TickOutput
from pai_ros.sae.model import SaeConfig, SparseAutoencoder
from pai_ros.sae.steering import Steering, steered
from test_live_tick import NAMES, S, T0, inputs


def random_sae(d: int = 16, f: int = 64, k: int = 4, seed: int = 0) -> SparseAutoencoder:
    torch.manual_seed(seed)
    sae = SparseAutoencoder(SaeConfig(d_in=d, d_sae=f, k=k, scaling_factor=0.7))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
    return sae


def test_delta_equals_reconstruction_with_changed_features_plus_error() -> None:
    sae, x = random_sae(), torch.randn(9, 16)
    codes = sae.encode(x)
    feats = [int(i) for i in codes[0].nonzero()[:2, 0]]  # two features active on token 0
    for mode, values in (("clamp", [5.0, -1.0]), ("scale", [2.0, 0.5]), ("ablate", [])):
        s = Steering.build(feats, mode, values, num_features=64, max_value=10)
        changed = codes.clone()
        if mode == "clamp":
            changed[:, feats] = torch.tensor(values)
        elif mode == "scale":
            changed[:, feats] *= torch.tensor(values)
        else:
            changed[:, feats] = 0
        reference = sae.decode(changed) + (x - sae.decode(codes))
        assert torch.allclose(steered(sae, x, s), reference, atol=1e-4), mode
        assert not torch.allclose(steered(sae, x, s), x)


def test_unchanged_features_give_exactly_the_input() -> None:
    sae, x = random_sae(), torch.randn(9, 16)
    s = Steering.build([3, 7], "scale", [1.0], num_features=64, max_value=10)
    assert torch.equal(steered(sae, x, s), x)


@pytest.mark.parametrize("features, mode, values, message", [
    ([1], "boost", [1.0], "steering mode 'boost' does not exist"),
    ([64], "ablate", [], "feature index 64 is out of range: the SAE has 64 features"),
    ([], "ablate", [], "no feature to steer"),
    ([2, 2], "ablate", [], "repeats a feature"),
    ([1, 2], "clamp", [1.0, 2.0, 3.0], "clamp needs one value, or one per feature (2); got 3"),
    ([1], "clamp", [11.0], "clamp value 11 is outside the allowed bound +-10"),
    ([1], "scale", [float("nan")], "values must be finite"),
    ([1], "ablate", [3.0], "ablate takes no values"),
])
def test_bad_requests_are_one_line(features, mode, values, message) -> None:
    with pytest.raises(UserError) as err:
        Steering.build(features, mode, values, num_features=64, max_value=10)
    assert message in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------ the live tick


@pytest.fixture(scope="module")
def steerable(tiny_act: Path, tiny_sae: Path) -> LiveTick:
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode="replan",
                                                  sae_path=str(tiny_sae), allow_steering=True,
                                                  steering_max_value=50.0, steering_max_duration_s=10.0))
    yield live
    live.close()


def test_steering_changes_actions_only_while_in_force(steerable: LiveTick, tiny_act: Path) -> None:
    plain, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode="replan"))
    try:
        now = T0
        base = plain.step(inputs(now), now)
        off = steerable.step(inputs(now), now)
        assert isinstance(off, TickOutput) and off.steering is None
        assert np.array_equal(off.action, base.action)  # the hook is there, disarmed: nothing changes
        # A no-op steering goes through the hook and still changes nothing, bit for bit.
        steerable.steer([1, 2], "scale", [1.0], 5.0, now)
        same = steerable.step(inputs(now), now)
        assert same.steering is not None and np.array_equal(same.action, base.action)
        # Clamping features high changes what the policy does; the tick says so.
        top = [int(i) for i in off.features.frame.feature_indices[:3]]
        message = steerable.steer(top, "clamp", [40.0], 2.0, now)
        assert message.startswith("steering: clamp") and "for 2 s" in message
        on = steerable.step(inputs(now + S), now + S)
        assert on.steering.steering.features == tuple(top) and on.steering.remaining_s == pytest.approx(1.0)
        assert not np.allclose(on.action, base.action)
        # The features describe the tokens before steering: as without it.
        assert np.array_equal(on.features.frame.feature_indices, off.features.frame.feature_indices)
        report = steerable.health.report()
        assert report.level == Level.WARN and "STEERED: clamp" in report.message
        # The time left is said once, as it is now (the message is the tick's, in chunk modes its chunk's).
        assert "s left" not in report.message
        assert steerable.diagnostics(now + S).values["steering"].endswith("(1.0 s left)")
        # Expired on the tick clock: back to the unsteered policy.
        after = steerable.step(inputs(now + 3 * S), now + 3 * S)
        assert after.steering is None and np.array_equal(after.action, base.action)
        assert steerable.diagnostics(now + 3 * S).values["steering"] == "off"
        steerable.steer(top, "ablate", [], 5.0, now + 4 * S)
        assert steerable.steering.clear() and steerable.step(inputs(now + 5 * S), now + 5 * S).steering is None
    finally:
        plain.close()


def test_steering_ends_when_the_tick_clock_goes_back() -> None:
    # use_sim_time with a simulator reset or a looping bag: /clock jumps back to ~0. An expiry at
    # t = 530 s would then keep the feature steered (the actions changed) for 530 s more.
    from pai_ros.live.steering import SteeringControl

    control = SteeringControl(allowed=True, max_value=50.0, max_duration_s=10.0)
    control.request([1], "ablate", [], 2.0, 528 * S, "sae", 8)
    assert control.current(529 * S, "sae").remaining_s == pytest.approx(1.0)
    assert control.current(1 * S, "sae") is None  # the clock went back
    assert control.current(529 * S, "sae") is None  # and it stays ended when time comes round again
    # A tick that read its time just before the request was accepted (it was decoding) steers.
    control.request([1], "ablate", [], 2.0, 600 * S, "sae", 8)
    assert control.current(600 * S - S // 2, "sae").remaining_s == pytest.approx(2.5)


def test_steering_requests_are_refused_with_reasons(steerable: LiveTick, tiny_act: Path) -> None:
    with pytest.raises(UserError, match=r"duration_s must lie in \(0, "):
        steerable.steer([1], "ablate", [], 11.0, T0)
    with pytest.raises(UserError, match="out of range: the SAE has 128 features"):
        steerable.steer([128], "ablate", [], 1.0, T0)
    with pytest.raises(UserError, match="outside the allowed bound"):
        steerable.steer([1], "scale", [-60.0], 1.0, T0)
    off, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act)))
    try:
        with pytest.raises(UserError, match="steering is off: start the node with allow_steering:=true"):
            off.steer([1], "ablate", [], 1.0, T0)
    finally:
        off.close()


def test_queue_mode_marks_the_ticks_whose_chunk_was_steered(tiny_act: Path, tiny_sae: Path) -> None:
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode="queue",
                                                  sae_path=str(tiny_sae), allow_steering=True))
    try:
        first = live.step(inputs(T0), T0)  # chunk of 10 starts unsteered
        live.steer([1], "ablate", [], 60.0, T0)
        marks = [live.step(inputs(T0 + i * S // 10), T0 + i * S // 10).steering is not None for i in range(1, 12)]
        # ticks 1-9 execute the unsteered chunk; tick 10 starts a chunk computed while steering
        assert first.steering is None and marks[:9] == [False] * 9 and marks[9:] == [True, True]
    finally:
        live.close()


def test_no_action_from_a_rejected_tick_even_while_steering(steerable: LiveTick) -> None:
    steerable.steer([1], "ablate", [], 5.0, T0 + 50 * S)
    bad = steerable.step(inputs(T0 + 50 * S, state=(np.nan, 0, 0)), T0 + 50 * S)
    assert isinstance(bad, Rejection)
    steerable.steering.clear()


# ------------------------------------------------------------------ the ROS service


@pytest.mark.ros
def test_steer_service_marks_features_and_diagnostics(tiny_act: Path, tiny_sae: Path, ros_env: dict) -> None:
    from ros_processes import HELPERS, Probe, Proc
    from test_policy_node import diag, start_node, start_robot

    def steer(*args: str) -> str:
        client = Proc([sys.executable, str(HELPERS / "steer_client.py"), "policy_node", *args], ros_env, "steer")
        return client.wait_for_line(lambda s: s.split(" ", 1)[0] in ("ACCEPTED", "REFUSED", "CLEARED"), 90)

    probe = Probe(["features:FeatureActivations", "/diagnostics:DiagnosticArray"], ros_env)
    node = start_node(tiny_act, ros_env, "-p", f"sae_path:={tiny_sae}", "-p", "allow_steering:=true",
                      "-p", "steering_max_value:=20.0", "-p", "mode:=replan")
    robot = start_robot(ros_env)
    try:
        probe.wait_for(lambda m: m["topic"] == "features" and not m["steered"], 60)
        assert steer("steer", "boost", "5", "1").startswith("REFUSED steering mode 'boost' does not exist")
        assert "outside the allowed bound" in steer("steer", "clamp", "5", "1", "25")
        assert steer("steer", "clamp", "30", "3,7", "12").startswith("ACCEPTED steering: clamp 3->12, 7->12")
        msg = probe.wait_for(lambda m: m["topic"] == "features" and m["steered"], 30)
        assert (msg["steering_mode"], msg["steered_features"], msg["steering_values"]) == ("clamp", [3, 7], [12.0, 12.0])
        assert 0 < msg["steering_remaining_s"] <= 30
        d = probe.wait_for(lambda m: m["topic"] == "/diagnostics" and "STEERED" in diag(m)["message"], 20)
        assert diag(d)["level"] == 1 and diag(d)["values"]["steering"].startswith("clamp 3->12")
        assert steer("clear").startswith("CLEARED steering cleared")
        cleared_at = probe.messages("features")[-1]["recv_ns"]
        probe.wait_for(lambda m: m["topic"] == "features" and not m["steered"] and m["recv_ns"] > cleared_at, 20)
    finally:
        for p in (robot, node, probe):
            p.stop()


@pytest.mark.ros
def test_steer_service_refuses_when_steering_is_not_allowed(tiny_act: Path, ros_env: dict) -> None:
    from ros_processes import HELPERS, Proc
    from test_policy_node import start_node

    node = start_node(tiny_act, ros_env)
    try:
        client = Proc([sys.executable, str(HELPERS / "steer_client.py"), "policy_node", "steer", "ablate", "1", "1"],
                      ros_env, "steer")
        line = client.wait_for_line(lambda s: s.startswith(("ACCEPTED", "REFUSED")), 90)
        assert line == "REFUSED steering is off: start the node with allow_steering:=true to allow it"
    finally:
        node.stop()
