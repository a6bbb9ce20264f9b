"""InputGate: the pure freshness rules the policy node applies before acting (no ROS)."""

from pai_ros.policy.freshness import FreshnessLimits, InputGate

S = 1_000_000_000


def gate() -> InputGate:
    return InputGate(FreshnessLimits(max_age_s=0.25, max_skew_s=0.1))


def test_fresh_inputs_pass_and_report_ages() -> None:
    v = gate().check({"front": 10 * S, "joint_states": 10 * S - S // 10}, 10 * S + S // 10)
    assert v.reason is None and abs(v.ages_s["joint_states"] - 0.2) < 1e-9


def test_stale_input_names_the_oldest() -> None:
    v = gate().check({"front": 10 * S - S, "wrist": 10 * S - 2 * S, "joint_states": 10 * S}, 10 * S)
    assert v.reason == "wrist is 2.000 s old (max_observation_age_s 0.25)"


def test_future_stamp_beyond_skew_is_refused_but_small_skew_is_not() -> None:
    g = gate()
    assert g.check({"front": 10 * S + S // 20}, 10 * S).reason is None
    v = g.check({"front": 12 * S}, 10 * S + S // 10)
    assert v.reason is not None and "1.900 s in the future" in v.reason


def test_stamp_going_back_is_refused_once_then_rebaselined() -> None:
    g = gate()
    assert g.check({"front": 100 * S}, 100 * S).reason is None
    v = g.check({"front": 95 * S}, 95 * S + S // 20)  # the source's clock jumped back 5 s
    assert v.reason is not None and v.reason.startswith("front stamp went back 5.000 s")
    # The new time base is sane: judged on age again, no restart needed.
    assert g.check({"front": 95 * S + S // 10}, 95 * S + S // 10).reason is None


def test_inputs_too_far_apart_are_refused_only_when_asked() -> None:
    """A camera 0.2 s behind fresh joints passes the age check (0.25 s): not one moment of the scene."""
    stamps = {"front": 10 * S - S // 5, "wrist": 10 * S - S // 20, "joint_states": 10 * S}
    assert gate().check(stamps, 10 * S).reason is None  # 0: not checked
    strict = InputGate(FreshnessLimits(max_age_s=0.25, max_skew_s=0.1, max_spread_s=0.1))
    assert strict.check(stamps, 10 * S).reason == ("front is 0.200 s older than joint_states (max_input_spread_s "
                                                   "0.1): the inputs are not one moment")
    assert strict.check({"front": 11 * S - S // 20, "joint_states": 11 * S}, 11 * S).reason is None


def test_the_same_message_seen_twice_is_not_going_back() -> None:
    g = gate()
    assert g.check({"front": 5 * S}, 5 * S).reason is None
    assert g.check({"front": 5 * S}, 5 * S + S // 10).reason is None


def test_rates_count_arrivals_per_window() -> None:
    g = gate()
    assert g.rates_hz(0) == {}
    for _ in range(30):
        g.received("front")
    for _ in range(3):
        g.received("wrist")
    assert g.rates_hz(S // 2) == {"front": 60.0, "wrist": 6.0}
    assert g.rates_hz(S) == {"front": 0.0, "wrist": 0.0}
