"""The live tick without ROS: the policy node's fault schedule, in process, with a fake clock.

Each case is what test_policy_node_faults.py does with real processes (those stay, fewer of
them), here in milliseconds: for every fault the tick (1) returns a Rejection, never an action,
(2) says why in Health, and (3) acts again on the next good inputs. Plus the parts that need no
network at all: clamping, the action plan behind a trajectory, observe-only accounting, SAE
features and their reload, method switching.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pai_ros.attention.explainers import estimated_memory_bytes
from pai_ros.errors import UserError
from pai_ros.imaging.errors import ImageConversionError
from pai_ros.live import (
    CameraFrame,
    JointReading,
    Level,
    LiveConfig,
    LiveTick,
    Rejection,
    TickInputs,
    TickOutput,
)

S = 1_000_000_000
T0 = 1_000 * S  # the fake clock's start
NAMES = ("x", "y", "gripper")


def image(h: int = 64, w: int = 80, value: int = 120) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def frame(stamp: int, rgb: np.ndarray | None = None, error: str | None = None, recv: int | None = None) -> CameraFrame:
    def decode() -> np.ndarray:
        if error:
            raise ImageConversionError(error)
        return image() if rgb is None else rgb
    return CameraFrame(stamp, stamp if recv is None else recv, decode, "front_camera")


def inputs(stamp: int, *, state=(0.5, 0.5, 0.0), names=NAMES, front=None, front_error=None,
           joint_stamp: int | None = None) -> TickInputs:
    return TickInputs(
        cameras={"front": frame(stamp, front, front_error), "wrist": frame(stamp)},
        joint_states=JointReading(stamp if joint_stamp is None else joint_stamp, stamp, list(names), list(state)))


@pytest.fixture(scope="module")
def tick(tiny_act: Path) -> LiveTick:
    live, notes = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES),
                                                      max_observation_age_s=0.5, control_rate_hz=10.0))
    assert notes == []
    yield live
    live.close()


def test_good_inputs_give_an_action_stamped_with_the_oldest_input(tick: LiveTick) -> None:
    out = tick.step(inputs(T0, joint_stamp=T0 - S // 10), T0 + S // 20)
    assert isinstance(out, TickOutput)
    assert out.action.shape == (3,) and out.action_names == NAMES
    assert out.stamp_ns == T0 - S // 10
    assert set(out.heatmaps) == {"front", "wrist"} and out.heatmaps["front"].shape == (64, 80, 3)
    assert out.camera_frame_ids["front"] == "front_camera"
    assert abs(sum(out.shares.values()) - 1) < 1e-5 and set(out.shares) == {"latent", "state", "front", "wrist"}
    assert out.plan.shape[1] == 3 and np.array_equal(out.plan[0], out.action)


# fault -> (inputs at now given the last good stamp, the reason's text); each is followed by good
# ticks that must act again.
FAULTS = {
    "stamps_back": (lambda now, last: inputs(now - 5 * S), "stamp went back"),
    "stamps_future": (lambda now, last: inputs(now + 3 * S), "in the future"),
    # A joint_states publisher that stopped: the last message (and its stamp) is all there is.
    "joints_pause": (lambda now, last: inputs(now, joint_stamp=last), "joint_states is 1.000 s old"),
    "wrong_size": (lambda now, last: inputs(now, front=image(32, 40)), "sends 40x32 images, the policy expects 80x64"),
    "truncated_image": (lambda now, last: inputs(now, front_error="rgb8 image of 64x80 needs 15360 bytes, got 9"),
                        "camera front: rgb8 image of 64x80"),
    "inf_state": (lambda now, last: inputs(now, state=(0.5, np.inf, 0.0)), "NaN or inf"),
    "nan_state": (lambda now, last: inputs(now, state=(np.nan, 0.5, 0.0)), "NaN or inf"),
    # Finite in the message's float64, inf in the policy's float32 (it was numpy's overflow warning, then "NaN or inf").
    "huge_state": (lambda now, last: inputs(now, state=(0.5, 1e308, 0.0)), "joint_states holds values beyond float32's"),
    "missing_joint": (lambda now, last: inputs(now, names=("x", "y", "grip")), "lacks joint(s) gripper"),
    "repeated_joint": (lambda now, last: TickInputs(
        cameras={"front": frame(now), "wrist": frame(now)},
        joint_states=JointReading(now, now, ["x", "y", "x", "gripper"], [0.5, 0.5, 9.0, 0.0])),
        "names joint(s) x more than once"),
    "short_joint_message": (lambda now, last: inputs(now, state=(0.5,)), "3 names but 1 positions"),
    # What rclpy hands over when a peer sends invalid UTF-8: U+FFFD in place of the bad byte.
    "undecodable_name": (lambda now, last: inputs(now, names=("x", "y", "gr\ufffdpper")), "not valid UTF-8"),
}


def test_every_fault_is_rejected_explained_and_recovered_from(tick: LiveTick) -> None:
    now = T0 + 10 * S
    tick.health.report()  # start a fresh 'since last' window
    for name, (make, reason) in FAULTS.items():
        now += S
        assert isinstance(tick.step(inputs(now), now), TickOutput), f"before {name}"
        last, now = now, now + S
        bad = tick.step(make(now, last), now)
        assert isinstance(bad, Rejection), f"{name}: an action came from bad data"
        assert reason in bad.reason, f"{name}: {bad.reason}"
        report = tick.health.report()
        assert report.level == Level.ERROR and reason in report.message
        assert reason in report.rejections_since_last
        now += S // 10
        good = tick.step(inputs(now), now)
        if name == "stamps_future":
            # Back from the future is a stamp going back: one tick refused, then judged on age alone.
            assert isinstance(good, Rejection) and "went back" in good.reason
            now += S // 10
            good = tick.step(inputs(now), now)
        assert isinstance(good, TickOutput), f"{name}: no recovery: {getattr(good, 'reason', '')}"
        assert tick.health.report().level == Level.OK


def test_a_policy_whose_action_is_not_finite_is_refused_and_acts_again_once_it_is(tiny_act: Path) -> None:
    """A forward that overflows (half precision, an input far outside training): nothing acts on NaN."""
    import torch

    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES),
                                                  max_observation_age_s=0.5, control_rate_hz=10.0))
    try:
        now = T0
        assert isinstance(live.step(inputs(now), now), TickOutput)
        weight = live.runner.policy.model.action_head.weight  # what every action passes through
        kept = weight.detach().clone()
        with torch.no_grad():
            weight.fill_(float("nan"))
        for _ in range(3):  # every tick, not only the one that refills a chunk
            now += S // 10
            bad = live.step(inputs(now), now)
            assert isinstance(bad, Rejection) and "action is not finite (NaN or inf)" in bad.reason, bad
        assert live.health.report().level == Level.ERROR
        with torch.no_grad():
            weight.copy_(kept)
        now += S // 10
        good = live.step(inputs(now), now)
        assert isinstance(good, TickOutput) and np.isfinite(good.action).all() and np.isfinite(good.plan).all()
    finally:
        live.close()


def test_nothing_acts_before_every_input_arrived(tiny_act: Path) -> None:
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES)),
                              resolve_topic=lambda t: f"/robot7/{t}")
    try:
        partial = TickInputs(cameras={"front": frame(T0)})
        out = live.step(partial, T0)
        assert isinstance(out, Rejection) and out.reason == "no message yet on /robot7/camera/wrist/image_raw"
        report = live.health.report()
        assert (report.ticks, report.actions, report.rejected) == (1, 0, 1)
    finally:
        live.close()


def test_repeated_reasons_are_counted_once_per_kind(tick: LiveTick) -> None:
    now = T0 + 100 * S
    tick.step(inputs(now), now)
    tick.health.report()
    for i in range(1, 6):  # five different ages, one kind of reason
        later = now + S + i * S // 10
        tick.step(inputs(later, joint_stamp=now), later)
    text = tick.health.report().rejections_since_last
    assert text.startswith("5 x joint_states is") and text.count(" x ") == 1


def test_input_rates_show_a_burst(tick: LiveTick) -> None:
    tick.diagnostics(T0)  # opens the rate window
    for _ in range(50):
        tick.received("front")
    for _ in range(5):
        tick.received("wrist")
    values = tick.diagnostics(T0 + S).values
    assert float(values["rate_front_hz"]) == pytest.approx(50.0) and float(values["rate_wrist_hz"]) == pytest.approx(5)
    for key in ("latency_mean_ms", "policy_p99_ms", "age_front_s", "heatmap_method", "action_output", "mode"):
        assert key in values


def test_actions_are_clamped_and_so_is_the_plan(tiny_act: Path) -> None:
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode="chunk",
                                                  action_min=[-0.01, -0.01, -0.01], action_max=[0.01, 0.01, 0.01]))
    try:
        first = live.step(inputs(T0), T0)
        assert isinstance(first, TickOutput)
        assert np.all(np.abs(first.action) <= 0.01) and np.all(np.abs(first.plan) <= 0.01)
        # chunk mode: the plan is exactly the actions the next ticks will execute.
        assert len(first.plan) == 10
        second = live.step(inputs(T0 + S // 10), T0 + S // 10)
        assert np.array_equal(second.action, first.plan[1]) and np.array_equal(second.plan, first.plan[1:])
    finally:
        live.close()


@pytest.mark.parametrize("mode", ["queue", "chunk", "ensemble"])
def test_after_a_refused_tick_the_action_comes_from_the_new_inputs_not_the_old_plan(tiny_act: Path,
                                                                                    mode: str) -> None:
    """A camera outage mid-chunk: the first action after it is the one a freshly started node
    would compute from the new inputs, not the rest of the chunk predicted before the outage."""
    config = LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode=mode, max_observation_age_s=0.5)
    live, _ = LiveTick.create(config)
    fresh, _ = LiveTick.create(config)  # the reference: a node that never saw scene A
    scene_a = {"front": image(value=1), "state": (0.9, -0.4, 0.1)}
    scene_b = {"front": image(value=2), "state": (-0.3, 0.6, 0.8)}
    try:
        now = T0
        for _ in range(3):
            now += S // 10
            assert isinstance(live.step(inputs(now, front=scene_a["front"], state=scene_a["state"]), now), TickOutput)
        old_plan_next = live.runner.queued_actions()[:1]  # what queue/chunk modes would have sent next
        later = now + 60 * S  # a minute without camera images (the joints kept coming)
        stale = live.step(inputs(now, joint_stamp=later), later)
        assert isinstance(stale, Rejection) and "s old" in stale.reason
        later += S // 10
        after = live.step(inputs(later, front=scene_b["front"], state=scene_b["state"]), later)
        reference = fresh.step(inputs(later, front=scene_b["front"], state=scene_b["state"]), later)
        assert isinstance(after, TickOutput) and isinstance(reference, TickOutput)
        np.testing.assert_array_equal(after.action, reference.action)
        np.testing.assert_array_equal(after.plan, reference.plan)
        if mode != "ensemble":  # the case that can fail: the old chunk's next action differs from B's first
            assert len(old_plan_next) == 1 and not np.allclose(old_plan_next[0], after.action, atol=1e-4)
    finally:
        live.close()
        fresh.close()


def test_an_action_ready_after_its_observation_went_stale_is_refused(tiny_act: Path) -> None:
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode="queue",
                                                  max_observation_age_s=0.5))
    try:
        assert isinstance(live.step(inputs(T0), T0 + S // 10), TickOutput)
        # Fresh when the tick starts (0.1 s), 0.7 s old when its action is ready: a slow tick.
        late = live.step(inputs(T0 + S), T0 + S + S // 10, clock=lambda: T0 + S + 7 * S // 10)
        assert isinstance(late, Rejection)
        assert "ready 0.700 s after its observation (max_observation_age_s 0.5" in late.reason
        report = live.health.report()
        assert (report.actions, report.rejected) == (1, 1) and report.level == Level.ERROR
        assert report.tick_mean_ms > 0  # the late tick's time counts in the latency figures
        again = live.step(inputs(T0 + 2 * S), T0 + 2 * S + S // 10, clock=lambda: T0 + 2 * S + S // 5)
        assert isinstance(again, TickOutput) and live.health.report().level == Level.OK
        assert len(again.plan) == 10  # a whole new chunk: nothing carried over from the late tick's
    finally:
        live.close()
    observing, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), publish_actions=False,
                                                       max_observation_age_s=0.5))
    try:  # observe-only: no action goes anywhere, so a slow tick still shows its maps
        slow = observing.step(inputs(T0), T0 + S // 10, clock=lambda: T0 + 7 * S // 10)
        assert isinstance(slow, TickOutput) and slow.heatmaps
    finally:
        observing.close()


@pytest.mark.parametrize("overrides, message", [
    ({"action_output": ["joint_state", "twist"]}, "action_output 'twist' does not exist"),
    ({"action_output": []}, "action_output is empty"),
    ({"heatmap_method": "gradcam"}, "heatmap_method 'gradcam' is not one of"),
    ({"cameras": ["front"]}, "is not 'name:topic'"),
    ({"heatmap_queries": "7:3"}, "query selection '7:3'"),
    ({"feature_heatmaps": [3]}, "feature_heatmaps needs sae_path"),
    ({"allow_steering": True}, "allow_steering needs sae_path"),
    ({"trajectory_points": "all"}, "trajectory_points 'all' is not one of"),
    ({"max_input_spread_s": 0.35}, "max_input_spread_s 0.35 never refuses anything: inputs that pass "
     "max_observation_age_s 0.25 and max_clock_skew_s 0.1 are at most 0.35 s apart"),
    ({"speed": 3}, "unknown policy_node parameter(s): speed"),
])
def test_bad_configuration_is_one_line(overrides: dict, message: str) -> None:
    with pytest.raises(UserError, match=None) as err:
        LiveConfig.defaults("/some/policy", **overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    ({"cameras": ["front:a", "side:b"]}, "cameras lacks wrist and names side, which the policy does not use: it "
                                         "needs one 'name:topic' entry per policy camera (policy cameras: front, "
                                         "wrist)"),
    ({"cameras": ["front:a"]}, "cameras lacks wrist: it needs one"),
    ({"action_names": ["a", "b"]}, "action_names has 2 names, the policy's action has 3"),
    ({"action_min": [0.0, 0.0]}, "action_min/action_max must have 3 values"),
    ({"heatmap_cameras": ["side"]}, "heatmap_cameras names unknown camera(s) side"),
    # Known at start: not a refusal of every tick that blames the robot's joint_states.
    ({"state_joint_names": ["x", "y"]}, "state_joint_names has 2 name(s), the policy's state has 3 dimension(s)"),
    ({"state_joint_names": ["x", "x", "y"]}, "state_joint_names names x more than once"),
    # Refused at start: at the first tick it would have refused every action for a picture's sake.
    ({"heatmap_queries": "99"}, "heatmap_queries 99: the policy predicts chunks of 10 actions"),
])
def test_configuration_that_does_not_fit_the_policy_is_refused(tiny_act: Path, overrides: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        LiveTick.create(LiveConfig.defaults(str(tiny_act), **overrides))
    assert message in str(err.value)


def test_observe_only_acts_without_counting_published_actions(tiny_act: Path) -> None:
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), publish_actions=False))
    try:
        out = live.step(inputs(T0), T0)
        assert isinstance(out, TickOutput)
        report = live.health.report()
        assert report.actions == 0 and report.message.startswith("observe-only")
        # A refused tick loses its pictures, not an action (none is ever sent): the log and
        # /diagnostics say so.
        refused = live.step(inputs(T0 + S), T0 + 3 * S)  # inputs 2 s old
        assert isinstance(refused, Rejection) and "old" in refused.reason
        assert live.warnings[-1] == f"not interpreted: {refused.reason}"
        assert live.health.report().message == f"not interpreted: {refused.reason}"
        assert isinstance(live.step(inputs(T0 + 4 * S), T0 + 4 * S), TickOutput)
        assert live.infos[-1] == "interpreting again after 1 refused tick(s)"
    finally:
        live.close()


def test_a_controller_without_joints_stays_unverified_holds_and_warns(tiny_act: Path) -> None:
    """An answer without a ``joints`` parameter is not a verdict: the outputs stay held, the check
    keeps asking (``verified`` is what stops it), and /diagnostics warns rather than errs."""
    from pai_ros.live import ControllerGate
    from pai_ros.live.controllers import ControllerVerdict

    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act)))
    try:
        gate = live.controller_gate = ControllerGate("/arm_controller", ("joint_trajectory", "joint_state"))
        gate.unusable("/arm_controller has no 'joints' parameter: is it a ros2_control controller?")
        assert not gate.verdict.verified and gate.held() == ("joint_trajectory",)
        out = live.step(inputs(T0), T0)
        assert isinstance(out, TickOutput) and out.held_outputs == ("joint_trajectory",)
        d = live.diagnostics(T0)
        assert d.level == Level.WARN and "has no 'joints' parameter" in d.values["controller"]
        with pytest.raises(ValueError, match="unverified controller"):
            ControllerVerdict(None, False)  # "no problem" without an answer: a tick must never see it
    finally:
        live.close()


def test_a_controller_answer_during_a_tick_changes_the_next_tick_not_this_one(tiny_act: Path) -> None:
    """The check answers on the spin thread while the tick runs on the worker. Here it answers when
    the tick reads the clock a second time (after the status is worded, before the count: where
    the count read the gate again until now): the tick still holds, counts and reports its action
    on the one reading it made, and the node publishes ``held_outputs``, not what the gate says by
    then (test_action_outputs checks the node's side)."""
    from pai_ros.live import ControllerGate

    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act)))
    try:
        gate = live.controller_gate = ControllerGate("/arm_controller", ("joint_trajectory",))

        def clock_while_the_controller_answers() -> int:
            gate.answered(None)
            return T0

        out = live.step(inputs(T0), T0, clock=clock_while_the_controller_answers)
        assert isinstance(out, TickOutput) and gate.verdict.verified and gate.verdict.problem is None
        assert out.held_outputs == ("joint_trajectory",) and gate.holds_all(out.held_outputs)
        assert out.status[1].startswith("holding actions") and live.health.counts[1] == 0
        out = live.step(inputs(T0 + S // 10), T0 + S // 10)
        assert isinstance(out, TickOutput) and out.held_outputs == () and not gate.holds_all(out.held_outputs)
        assert out.status[1].startswith("publishing actions") and live.health.counts[1] == 1
    finally:
        live.close()


@pytest.mark.parametrize("outputs, holds_all", [(("joint_trajectory",), True),
                                                 (("joint_trajectory", "joint_state"), False)])
def test_a_controller_that_does_not_match_holds_its_actions_and_the_count_says_so(tiny_act: Path, outputs,
                                                                                  holds_all: bool) -> None:
    """The core decides, counts and words it: the node used to rewrite the status and count held actions."""
    from pai_ros.live import ControllerGate

    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act)))
    try:
        gate = live.controller_gate = ControllerGate("/arm_controller", outputs)
        assert gate.checked_outputs == ("joint_trajectory",) and "joint_trajectory" in gate.held()
        assert "joint_state" not in gate.held()  # a JointState command goes out: no controller checks it
        out = live.step(inputs(T0), T0)
        assert isinstance(out, TickOutput) and out.held_outputs == ("joint_trajectory",)
        assert gate.holds_all(out.held_outputs) == holds_all
        d = live.diagnostics(T0)
        assert live.health.counts[1] == (0 if holds_all else 1)
        assert d.message.startswith("holding actions" if holds_all else "publishing actions"), d.message
        assert "not sending to the controller: joints of /arm_controller not verified yet" in d.message
        assert d.level == Level.WARN and d.values["controller"].startswith("joints of /arm_controller")
        gate.answered("/arm_controller has joints ['a']; it refuses trajectories for ['x']")
        assert live.diagnostics(T0).level == Level.ERROR  # answered, and the joints do not match
        gate.answered(None)
        assert gate.held() == ()
        out = live.step(inputs(T0 + S // 10), T0 + S // 10)
        assert isinstance(out, TickOutput) and out.held_outputs == () and not gate.holds_all(out.held_outputs)
        d = live.diagnostics(T0 + S // 10)
        assert live.health.counts[1] == (1 if holds_all else 2) and d.level == Level.OK
        assert d.message.startswith("publishing actions") and d.values["controller"] == "/arm_controller: joints match"
    finally:
        live.close()


def test_a_joint_whose_own_publisher_stopped_is_named(tiny_act: Path) -> None:
    """joint_states merged from an arm and a gripper publisher: the stale one is named, not only the topic."""
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES),
                                                  max_observation_age_s=0.5))
    try:
        now = T0 + S
        live.joints.add(JointReading(T0, T0, ["gripper"], [0.0]))  # 1 s old
        live.joints.add(JointReading(now, now, ["x", "y"], [0.5, 0.5]))
        out = live.step(TickInputs(cameras={"front": frame(now), "wrist": frame(now)},
                                   joint_states=live.joints.reading()), now)
        assert isinstance(out, Rejection) and out.reason.startswith("joint_states is 1.000 s old")
        assert out.reason.endswith("; not updated: joint(s) gripper"), out.reason
        live.joints.add(JointReading(now, now, ["gripper"], [0.0]))
        assert isinstance(live.step(TickInputs(cameras={"front": frame(now), "wrist": frame(now)},
                                               joint_states=live.joints.reading()), now), TickOutput)
    finally:
        live.close()


@pytest.mark.parametrize("first, second", [("cross_attention", "relevance"), ("relevance", "cross_attention")])
def test_switching_to_or_from_a_gradient_method_in_ensemble_mode_keeps_acting(tiny_act: Path, first: str,
                                                                             second: str) -> None:
    """The ensembler's sums, made in inference mode, refused the in-place update of the first
    gradient tick: an 'internal error' refusal and a reset ensemble, the robot's actions gapped."""
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode="ensemble",
                                                  heatmap_method=first, control_rate_hz=10.0))
    try:
        for k in range(6):
            if k == 3:
                live.set_heatmap_method(second)
            t = T0 + k * S // 10
            out = live.step(inputs(t), t)
            assert isinstance(out, TickOutput), (k, out)
    finally:
        live.close()


def test_unstamped_inputs_are_said_once_and_outputs_carry_their_arrival_time(tiny_act: Path) -> None:
    """Judged by arrival, silently, and the heatmap went out stamped 0 while the action had a time."""
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES)))
    try:
        for k in range(2):
            t = T0 + k * S // 10
            cams = {"front": CameraFrame(0, t, lambda: image(), "front_camera"), "wrist": frame(t)}
            out = live.step(TickInputs(cameras=cams, joint_states=JointReading(t, t, list(NAMES), [0.5, 0.5, 0.0])), t)
            assert isinstance(out, TickOutput) and out.camera_stamps_ns == {"front": t, "wrist": t}
        said = [w for w in live.warnings if "unstamped" in w]
        assert len(said) == 1 and said[0].startswith("camera/front/image_raw arrives unstamped"), live.warnings
        assert live.diagnostics(t).values["unstamped_inputs"] == "front"
    finally:
        live.close()


@pytest.mark.parametrize("mode, queries", [("chunk", "mean"), ("queue", "executed")])
def test_heatmaps_from_an_earlier_forward_pass_carry_its_frame(tiny_act: Path, mode: str, queries: str) -> None:
    """Between chunk refills the map explains the refill's frame: it was drawn on the current image
    with the current header, a picture of where the policy looked in a frame it never saw."""
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode=mode,
                                                  heatmap_queries=queries, control_rate_hz=10.0))
    try:
        outs = []
        for k in range(3):  # tiny_act executes 10 actions per chunk: one refill, then two ticks from it
            t = T0 + k * S // 10
            front = image(value=10 + k)
            cams = {"front": CameraFrame(t, t, lambda f=front: f, f"front_{k}"), "wrist": frame(t)}
            out = live.step(TickInputs(cameras=cams, joint_states=JointReading(t, t, list(NAMES), [0.5, 0.5, 0.0])), t)
            assert isinstance(out, TickOutput), out
            outs.append(out)
        for out in outs:
            assert out.heatmap_stamps_ns["front"] == T0 and out.heatmap_frame_ids["front"] == "front_0"
        assert outs[2].camera_stamps_ns["front"] == T0 + 2 * S // 10  # features and the action: this tick's
        if mode == "chunk":  # drawn on the refill's image: the same map, so the same overlay on every tick
            assert np.array_equal(outs[0].heatmaps["front"], outs[2].heatmaps["front"])
    finally:
        live.close()


def test_split_joint_publishers_starting_apart_do_not_look_like_a_clock_jump(tiny_act: Path) -> None:
    """The arm's stamp, judged while the gripper was missing, made the completed (older) merge 'go back'."""
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES)))
    try:
        t = T0 + S // 20
        cams = {"front": frame(t), "wrist": frame(t)}
        live.joints.add(JointReading(t, t, ["x", "y"], [0.5, 0.5]))
        out = live.step(TickInputs(cameras=cams, joint_states=live.joints.reading()), t)
        assert isinstance(out, Rejection) and out.reason == "joint_states lacks joint(s) gripper (has: x, y)"
        live.joints.add(JointReading(T0, t, ["gripper"], [0.0]))  # its message is 50 ms older
        out = live.step(TickInputs(cameras=cams, joint_states=live.joints.reading()), t + S // 100)
        assert isinstance(out, TickOutput), out
        assert out.stamp_ns == T0
    finally:
        live.close()


def test_heatmap_method_switches_at_run_time_and_a_bad_one_keeps_the_current(tick: LiveTick) -> None:
    now = T0 + 200 * S
    tick.set_heatmap_method("rollout")
    out = tick.step(inputs(now), now)
    assert out.heatmap_method == "rollout"
    with pytest.raises(UserError, match="not one of"):
        tick.set_heatmap_method("magic")
    assert tick.heatmap_method == "rollout"
    tick.set_heatmap_method("cross_attention")


def test_relevance_live_sends_the_same_actions_and_a_refused_switch_changes_nothing(tiny_act: Path) -> None:
    """relevance: same action as without it; short memory or a frozen policy: one line, previous method kept."""
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode="replan",
                                                  max_observation_age_s=0.5, control_rate_hz=10.0))
    try:
        now = T0 + 300 * S
        plain = live.step(inputs(now), now)
        for method in ("relevance", "relevance_cross", "input_gradient"):
            live.set_heatmap_method(method)
            out = live.step(inputs(now + S), now + S)
            assert isinstance(out, TickOutput) and out.heatmap_method == method
            assert np.array_equal(out.action, plain.action)  # bit for bit: replan, same inputs
            assert set(out.heatmaps) == {"front", "wrist"} and abs(sum(out.shares.values()) - 1) < 1e-5
            assert live.diagnostics(now + S).values["heatmap_method"] == f"{method} (explains chunk)"

        live.set_heatmap_method("rollout")
        sizes = [(h, w) for _, h, w in live.spec.cameras.values()]
        relevance_need = estimated_memory_bytes(live.runner.policy, "relevance", sizes, live._token_count())
        live.memory_available = lambda: 1024  # a machine with 1 KiB free
        explainer_before = live.runner.explainer
        with pytest.raises(UserError, match="not enough memory for relevance on cpu: it needs about"):
            live.set_heatmap_method("relevance")
        assert live.heatmap_method == "rollout" and live.runner.explainer is explainer_before
        # input_gradient keeps the backbone's activations too: it asks for more than relevance
        live.memory_available = lambda: relevance_need + 1
        with pytest.raises(UserError, match="not enough memory for input_gradient on cpu"):
            live.set_heatmap_method("input_gradient")
        live.set_heatmap_method("relevance")
        live.set_heatmap_method("rollout")
        live.memory_available = lambda: 1024
        out = live.step(inputs(now + 2 * S), now + 2 * S)
        assert isinstance(out, TickOutput) and out.heatmap_method == "rollout" and out.heatmaps

        live.memory_available = lambda: None  # unknown: no check
        for p in live.runner.policy.parameters():
            p.requires_grad_(False)
        with pytest.raises(UserError, match="gives no gradient to its attention maps"):
            live.set_heatmap_method("relevance_cross")
        assert live.heatmap_method == "rollout" and live.runner.explainer is explainer_before
        assert isinstance(live.step(inputs(now + 3 * S), now + 3 * S), TickOutput)
    finally:
        live.close()


def test_a_relevance_target_that_does_not_exist_is_one_line(tiny_act: Path) -> None:
    with pytest.raises(UserError, match="relevance target 'last' is not one of"):
        LiveConfig.defaults(str(tiny_act), relevance_target="last")
    with pytest.raises(UserError, match="dim:7 is outside the policy's 3 action dimensions"):
        LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), relevance_target="dim:7",
                                            heatmap_method="relevance"))


def test_features_every_tick_and_sae_reload_keeps_the_old_one_on_failure(tiny_act: Path, tiny_sae: Path,
                                                                        tmp_path: Path) -> None:
    from pai_ros.sae.model import content_id

    live, notes = LiveTick.create(LiveConfig.defaults(str(tiny_act), sae_path=str(tiny_sae), features_top_n=5,
                                                      feature_heatmaps=[3]))
    try:
        assert notes and "no OOD flag" in notes[0]
        out = live.step(inputs(T0), T0)
        f = out.features
        assert f is not None and f.sae_id == content_id(tiny_sae) and f.num_features == 128
        assert 1 <= len(f.frame.feature_indices) <= 5 and f.frame.num_tokens == 14 and not f.is_ood
        assert set(out.feature_heatmaps) == {(3, "front"), (3, "wrist")}
        with pytest.raises(UserError):
            live.reload_sae(str(tmp_path / "nowhere"))
        with pytest.raises(UserError, match="an empty sae_path cannot switch features off while the node runs"):
            live.reload_sae("")  # it looked for cfg.json in the working directory
        assert live.sae.loaded.sae_id == f.sae_id
        # A calibrated copy: every frame is above its threshold -> flagged, WARN, still acting.
        other = tmp_path / "sae"
        shutil.copytree(tiny_sae, other)
        (other / "ood.json").write_text(json.dumps({"sae_id": content_id(other), "threshold": 1e-9, "rule": "p99"}))
        assert "OOD threshold" in live.reload_sae(str(other))
        flagged = live.step(inputs(T0 + S), T0 + S)
        assert isinstance(flagged, TickOutput) and flagged.features.is_ood
        report = live.health.report()
        assert report.level == Level.WARN and "out of distribution" in report.message
        shutil.rmtree(other)
        live.warnings.clear()
        gone = live.diagnostics(T0 + 2 * S)
        assert "has vanished" in gone.values["sae_file"]
        # Beside the OOD warning, not hidden behind it: in the message and once in the log.
        assert gone.level == Level.WARN and "out of distribution" in gone.message and "has vanished" in gone.message
        live.diagnostics(T0 + 3 * S)
        assert [w for w in live.warnings if "has vanished" in w] == [gone.values["sae_file"]]
    finally:
        live.close()


def test_unit_conversions_between_the_robot_and_the_policy(tiny_act: Path) -> None:
    """Radians on the robot, degrees in the policy (or any linear map): state in, actions out."""
    common = dict(state_joint_names=list(NAMES), mode="replan")
    converted, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_scale=[2.0, 2.0, 2.0],
                                                       state_offset=[1.0, 0.0, 0.0], action_scale=[4.0, 4.0, 4.0],
                                                       action_offset=[0.5, 0.5, 0.5], **common))
    plain, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), **common))
    try:
        robot = converted.step(inputs(T0, state=(0.1, 0.2, 0.3)), T0)
        policy = plain.step(inputs(T0, state=(1.2, 0.4, 0.6)), T0)  # what the policy saw: 2 x ROS + offset
        assert np.allclose(robot.action, (policy.action - 0.5) / 4.0, atol=1e-6)
        assert np.allclose(robot.plan, (policy.plan - 0.5) / 4.0, atol=1e-6)
    finally:
        converted.close()
        plain.close()
    with pytest.raises(UserError, match=r"^state_scale has 1 value\(s\); it needs 3, one per dimension of the "
                                        r"policy's state \(or none: scale 1, offset 0\)$"):
        LiveTick.create(LiveConfig.defaults(str(tiny_act), state_scale=[57.3]))
    with pytest.raises(UserError, match=r"^action_scale has 2 and action_offset has 4 value\(s\)"):
        LiveTick.create(LiveConfig.defaults(str(tiny_act), action_scale=[1.0, 2.0], action_offset=[0.0] * 4))
    with pytest.raises(UserError, match="action_scale must not contain 0"):
        LiveConfig.defaults(str(tiny_act), action_scale=[1.0, 0.0, 1.0])
    # Applied in float32: 1e-39 is subnormal there (0.5 became inf), 1e-50 is 0 (a lost joint), 1e39 is inf.
    for label, value in (("action_scale", 1e-39), ("state_scale", 1e-50), ("action_offset", 1e39)):
        with pytest.raises(UserError, match=f"^{label} must (not contain 0 or a number too small for float32|"
                                            "hold finite float32 numbers)"):
            LiveConfig.defaults(str(tiny_act), **{label: [1.0, value, 1.0]})
    # Within float32 but overflowing it together: no action goes out, and the tick says which parameters
    # (also with a clamp, which would have made the overflow the joint limit).
    overflow, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), action_scale=[1e-30] * 3,
                                                      action_offset=[3e38] * 3, action_min=[-1.0] * 3,
                                                      action_max=[1.0] * 3, **common))
    try:
        refused = overflow.step(inputs(T0), T0)
        assert isinstance(refused, Rejection) and "action in the robot's units is not finite" in refused.reason
        assert "check action_scale and action_offset" in refused.reason
    finally:
        overflow.close()


def test_diagnostics_say_when_ticks_fall_behind_the_control_rate() -> None:
    """The last finished tick said OK while half the periods were skipped (a chunk trained at 30 Hz
    playing at 15) or while one tick never ended: the pace since the last report is a status of its own."""
    from pai_ros.live.health import Health

    health = Health()
    for _ in range(4):  # on time
        health.tick_started()
        health.acted(0.01, True, Level.OK, "publishing actions")
    report = health.report()
    assert report.pace == (Level.OK, "keeping up: 0 of 4 control periods skipped since the last report")
    for _ in range(4):  # every other period skipped
        health.tick_started()
        health.skipped()
        health.acted(0.06, True, Level.OK, "publishing actions")
    report = health.report()
    assert report.level == Level.OK and report.message == "publishing actions"  # acting: as the tick says
    assert report.pace[0] == Level.WARN and report.skipped_since_last == 4
    assert report.pace[1].startswith("falling behind: 4 of 8 control periods skipped since the last report; a tick "
                                     "takes")
    for _ in range(3):  # a tick that never ends
        health.skipped()
    pace = health.report().pace
    assert pace[0] == Level.ERROR and pace[1].startswith("no tick started since the last report, 3 control periods")
    assert health.report().pace[0] == Level.OK  # a window with no tick due


def test_the_first_refusal_after_acting_says_where_to_stop(tiny_act: Path) -> None:
    """A controller given a whole plan would execute the rest of it after a fault: the first refusal
    carries the point of the last plan sent that the arm is heading to (the node sends it as a
    one-point trajectory), later ones nothing. Not the plan's first point: by the time a slow tick is
    refused the arm may be far past it, and going back within one period would be a fast reversal."""
    from pai_ros.live import ControllerGate

    period = S // 10
    config = LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode="chunk", control_rate_hz=10.0)
    live, _ = LiveTick.create(config)
    try:
        assert live.step(inputs(T0), T0 - S).stop_at is None  # refused before any action: nothing to stop
        sent = live.step(inputs(T0), T0)
        assert isinstance(sent, TickOutput) and len(sent.plan) >= 4
        broken = inputs(T0 + period, state=(float("nan"), 0.5, 0.0))
        first = live.step(broken, T0 + 2 * period + period // 2)  # point 2 is due at 3 periods after sending
        assert isinstance(first, Rejection)
        np.testing.assert_array_equal(first.stop_at, sent.plan[2])
        assert live.step(broken, T0 + 3 * period).stop_at is None
        # Long after the plan's end: its last point.
        again = live.step(inputs(T0 + 10 * period), T0 + 10 * period)
        assert isinstance(again, TickOutput)
        last = live.step(inputs(T0, state=(float("nan"), 0.5, 0.0)), T0 + 100 * period)
        np.testing.assert_array_equal(last.stop_at, again.plan[-1])
        # A trajectory controller the gate holds got no plan: there is nothing to stop.
        gate = live.controller_gate = ControllerGate("/arm_controller", ("joint_trajectory", "joint_state"))
        gate.unusable("/arm_controller has no 'joints' parameter")
        held = live.step(inputs(T0 + 101 * period), T0 + 101 * period)
        assert isinstance(held, TickOutput) and held.held_outputs == ("joint_trajectory",)
        assert live.step(broken, T0 + 102 * period).stop_at is None
    finally:
        live.close()


def test_inputs_further_apart_than_max_input_spread_s_are_refused(tiny_act: Path) -> None:
    config = LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), max_observation_age_s=0.5,
                                 max_input_spread_s=0.1)
    live, _ = LiveTick.create(config)
    try:
        out = live.step(inputs(T0, joint_stamp=T0 + S // 5), T0 + S // 5)  # cameras 0.2 s behind the joints
        assert isinstance(out, Rejection) and "0.200 s older than joint_states (max_input_spread_s 0.1)" in out.reason
        assert isinstance(live.step(inputs(T0 + S // 2, joint_stamp=T0 + S // 2 + S // 20), T0 + S // 2 + S // 20),
                          TickOutput)
    finally:
        live.close()


def test_a_node_that_stops_says_where_once(tiny_act: Path) -> None:
    """Ctrl-C on the node: the point of the last plan sent that the arm is heading to, then nothing (a
    second shutdown, or a refusal after it, sends no second stop)."""
    period = S // 10
    config = LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES), mode="chunk", control_rate_hz=10.0)
    live, _ = LiveTick.create(config)
    try:
        assert live.stopping(T0) is None  # nothing sent yet
        sent = live.step(inputs(T0), T0)
        assert isinstance(sent, TickOutput) and len(sent.plan) >= 3
        np.testing.assert_array_equal(live.stopping(T0 + period + period // 2), sent.plan[1])
        assert live.stopping(T0 + 2 * period) is None
        assert live.step(inputs(T0, state=(float("nan"), 0.5, 0.0)), T0 + 3 * period).stop_at is None
    finally:
        live.close()


def test_a_picture_that_fails_never_stops_the_action(tiny_act: Path, tiny_sae: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Features and heatmaps explain an action already computed: their failure (a GPU out of memory, a
    bug) leaves the action as it is, says so on /diagnostics every tick and in the log once."""
    import pai_ros.live.tick as tick_module

    common = dict(state_joint_names=list(NAMES), mode="replan")
    plain, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), **common))
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), sae_path=str(tiny_sae), **common))
    try:
        expected = plain.step(inputs(T0), T0).action

        def broken(*args, **kwargs):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        monkeypatch.setattr(live, "_features", broken)
        monkeypatch.setattr(tick_module, "maps_for_tick", broken)
        for tick in range(2):
            out = live.step(inputs(T0 + tick * S), T0 + tick * S)
            assert isinstance(out, TickOutput), out
            np.testing.assert_array_equal(out.action, expected)
            assert out.features is None and out.heatmaps == {} and out.feature_heatmaps == {}
            level, message = out.status
            assert level == Level.WARN and "no features this tick: RuntimeError('CUDA error" in message
            assert "no heatmap this tick: RuntimeError('CUDA error" in message
        said = [w for w in live.warnings if "the action goes out as computed; said once" in w]
        assert len(said) == 2, live.warnings  # one line per picture, not one per tick
    finally:
        live.close()
        plain.close()


def test_a_gradient_method_refused_at_start_still_acts_with_cross_attention(tiny_act: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The default input_gradient on a machine without the memory for it: the node starts, acts, says why."""
    import pai_ros.live.tick as tick_module

    monkeypatch.setattr(tick_module, "available_memory_bytes", lambda device: 1024)
    live, notes = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES),
                                                      max_observation_age_s=0.5, control_rate_hz=10.0))
    try:
        assert LiveConfig.defaults(str(tiny_act)).heatmap_method == "input_gradient"
        assert live.heatmap_method == "cross_attention" and live.runner.explainer is None
        assert len(notes) == 1 and "heatmap_method input_gradient refused, showing cross_attention" in notes[0]
        now = T0 + 400 * S
        out = live.step(inputs(now), now)
        assert isinstance(out, TickOutput) and out.heatmap_method == "cross_attention" and out.heatmaps
        assert "not enough memory" in live.diagnostics(now).values["heatmap_method_refused"]
        live.memory_available = lambda: None  # memory freed: a later switch works and the note goes
        live.set_heatmap_method("input_gradient")
        assert "heatmap_method_refused" not in live.diagnostics(now).values
    finally:
        live.close()


def test_a_grey_camera_is_acted_on_and_said_once(tiny_act: Path) -> None:
    """mono8 becomes grey RGB: not refused (some policies are trained so), but never silent."""
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), state_joint_names=list(NAMES)))
    try:
        for now in (T0, T0 + S // 10):
            grey = TickInputs(cameras={"front": CameraFrame(now, now, lambda: image(), "front_camera", "mono8"),
                                       "wrist": frame(now)},
                              joint_states=JointReading(now, now, list(NAMES), [0.5, 0.5, 0.0]))
            assert isinstance(live.step(grey, now), TickOutput)
        said = [w for w in live.warnings if "camera front sends mono8 (grey) images" in w]
        assert len(said) == 1 and len(live.warnings) == 1, live.warnings
    finally:
        live.close()


def test_run_time_changes_apply_all_or_nothing(tiny_act: Path, tiny_sae: Path, tmp_path: Path) -> None:
    """What ros2 param set / load and set_parameters_atomically ask of the node, without ROS."""
    from pai_ros.live.reconfigure import reconfigure

    other = tmp_path / "other_sae"
    shutil.copytree(tiny_sae, other)
    live, _ = LiveTick.create(LiveConfig.defaults(str(tiny_act), sae_path=str(tiny_sae)))
    try:
        first, method = live.sae, live.heatmap_method
        assert method != "rollout"
        # A method switch before a refused SAE in the same request is undone; the old SAE stays.
        with pytest.raises(UserError) as info:
            reconfigure(live, [("heatmap_method", "rollout"), ("sae_path", str(tmp_path / "nowhere"))])
        assert str(info.value).startswith(f"SAE not reloaded, keeping {first.loaded.sae_id} (the request's other "
                                          "changes were undone): ")
        assert live.heatmap_method == method and live.sae is first and live.sae_path == str(tiny_sae)
        # Both apply when both are good; what changed is reported.
        done = reconfigure(live, [("heatmap_method", "rollout"), ("sae_path", str(other))])
        assert done[0] == "heatmap_method is now rollout" and done[1].endswith(f"from {other}")
        assert live.heatmap_method == "rollout" and live.sae is not first and live.sae_path == str(other)
        # Values already in force change nothing ...
        assert reconfigure(live, [("heatmap_method", "rollout"), ("sae_path", str(other))]) == []
        # ... and the path compared is the one loaded now: going back to the first directory reloads it.
        assert reconfigure(live, [("sae_path", str(tiny_sae))])[0].endswith(f"from {tiny_sae}")
        assert live.sae_path == str(tiny_sae) and isinstance(live.step(inputs(T0), T0), TickOutput)
        with pytest.raises(UserError, match="heatmap_method not changed, keeping rollout: heatmap_method 'magic'"):
            reconfigure(live, [("heatmap_method", "magic")])
        # Undoing a switch away from a gradient method cannot be refused, even when the memory that
        # method needs is gone by then (switching back by name checked it again, and failed).
        reconfigure(live, [("heatmap_method", method)])
        explainer = live.runner.explainer
        live.memory_available = lambda: 0
        with pytest.raises(UserError, match="^SAE not reloaded"):
            reconfigure(live, [("heatmap_method", "rollout"), ("sae_path", str(tmp_path / "nowhere"))])
        assert live.heatmap_method == method and live.runner.explainer is explainer
        assert isinstance(live.step(inputs(T0 + S), T0 + S), TickOutput)
        # Not only the user's errors: a GPU out of memory while loading (or an unreadable cfg.json) refuses
        # the request whole and the node goes on; it ended the node.
        def out_of_memory(path: str) -> str:
            import torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 MiB")

        live.reload_sae = out_of_memory
        with pytest.raises(UserError, match=r"^SAE not reloaded, keeping .* \(the request's other changes were "
                                            r"undone\): OutOfMemoryError: CUDA out of memory"):
            reconfigure(live, [("heatmap_method", "rollout"), ("sae_path", str(other))])
        assert live.heatmap_method == method and live.sae_path == str(tiny_sae)
    finally:
        live.close()


def test_refusals_reach_the_log_without_flooding_it() -> None:
    """The terminal says why no action goes out: at once, then a reminder, then that acting resumed."""
    from pai_ros.live.refusal_log import RefusalLog

    log = RefusalLog(remind_s=5.0, other_kind_s=1.0)
    ms = S // 1000
    assert log.refused("camera front is 0.41 s old", T0) == "no action: camera front is 0.41 s old"
    assert log.refused("camera front is 0.48 s old", T0 + 100 * ms) is None  # same kind, said 0.1 s ago
    assert log.refused("joint_states lacks joint(s) x", T0 + 500 * ms) is None  # another kind, < 1 s
    assert log.refused("joint_states lacks joint(s) x", T0 + 1100 * ms) == (
        "no action: joint_states lacks joint(s) x (2 more tick(s) refused since the last report)")
    assert log.refused("joint_states lacks joint(s) x", T0 + 3000 * ms) is None
    assert log.refused("joint_states lacks joint(s) x", T0 + 6100 * ms).endswith("(1 more tick(s) refused since "
                                                                                 "the last report)")
    assert log.acted() == "acting again after 6 refused tick(s)"
    assert log.acted() is None
    # After acting, the next refusal is said at once, whatever was said before.
    assert log.refused("joint_states lacks joint(s) x", T0 + 6200 * ms) == "no action: joint_states lacks joint(s) x"


def test_a_refused_tick_is_said_in_the_nodes_log(tick: LiveTick) -> None:
    tick.warnings.clear()
    tick.infos.clear()
    # Later than every stamp the module's other tests gave this shared tick (its clock only moves on).
    out = tick.step(inputs(T0 + 500 * S, names=("x", "y", "grip")), T0 + 500 * S)
    assert isinstance(out, Rejection) and out.reason.startswith("joint_states lacks joint(s) gripper")
    assert tick.warnings == [f"no action: {out.reason}"]
    assert isinstance(tick.step(inputs(T0 + 501 * S), T0 + 501 * S), TickOutput)
    assert tick.infos == ["acting again after 1 refused tick(s)"]
    tick.warnings.clear()
    tick.infos.clear()


def test_camera_entries_take_lerobots_key_and_image_transports_compressed_topics() -> None:
    from pai_ros.live.config import CameraInput

    assert CameraInput.parse("observation.images.front:/cam/image_raw") == CameraInput("front", "/cam/image_raw")
    # image_transport publishes sensor_msgs/CompressedImage on .../compressed: subscribing Image there finds nothing.
    assert CameraInput.parse("wrist:/so101/wrist/image_raw/compressed").compressed
    assert CameraInput.parse("wrist:/so101/wrist/image_raw/compressed:compressed").compressed
    assert not CameraInput.parse("wrist:/so101/wrist/image_raw").compressed
