"""`pai features effects`: what each top feature does to the actions, next to how strongly it fires.

Runs the real command line on a recording of the tiny policy and SAE. A feature that never fires
on the chosen frames cannot change anything when ablated (exactly zero), clamping moves the
actions, and the browser shows the effects only while they belong to the current analysis.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_pai


@pytest.fixture(scope="module")
def recording(tiny_act: Path, tiny_sae: Path, tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, _ = tiny_dataset
    out = tmp_path_factory.mktemp("effects") / "rec"
    for args in (("record", "--policy-path", str(tiny_act), "--sae", str(tiny_sae), "--dataset-root", str(root),
                  "--episode", "0", "1", "--output-dir", str(out), "--device", "cpu", "--quiet"),
                 ("analyse", str(out), "--top-features", "8", "--no-thumbnails", "--quiet")):
        res = run_pai("features", *args)
        assert res.returncode == 0, res.stderr
    return out


def test_effects_rank_features_by_what_they_do_to_the_actions(recording: Path) -> None:
    res = run_pai("features", "effects", str(recording), "--top-features", "8", "--frames", "12", "--device", "cpu",
                  "--quiet")
    assert res.returncode == 0, res.stderr
    assert "largest when ablated" in res.stdout and "rank correlation" in res.stdout
    effects = json.loads((recording / "analysis" / "effects.json").read_text())
    analysis = json.loads((recording / "analysis" / "analysis.json").read_text())
    assert effects["analysis_created"] == analysis["created"] and effects["frames"] == 12
    rows = effects["features"]
    assert [r["feature"] for r in sorted(rows, key=lambda r: r["activation_rank"])] == \
        [f["feature"] for f in analysis["features"][:8]]
    # Ranked by effect, largest first; features with the same effect (0 when one never fires) share a rank.
    assert [r["effect_rank"] for r in rows] == [1 + sum(o["ablate_effect"] > r["ablate_effect"] for o in rows)
                                                for r in rows]
    assert rows[0]["effect_rank"] == 1
    assert [r["ablate_effect"] for r in rows] == sorted((r["ablate_effect"] for r in rows), reverse=True)
    assert rows[0]["ablate_effect"] > 0 and all(r["clamp_effect"] > 0 for r in rows)
    assert all(r["clamp_value"] == pytest.approx(next(f["stats"]["max"] for f in analysis["features"]
                                                       if f["feature"] == r["feature"])) for r in rows)
    assert (recording / "analysis" / "effects.png").stat().st_size > 1000


def test_effects_narrowed_to_action_dimensions_and_a_horizon(recording: Path, tmp_path: Path) -> None:
    copy = tmp_path / "rec"
    shutil.copytree(recording, copy)
    common = ("features", "effects", str(copy), "--top-features", "4", "--frames", "8", "--device", "cpu", "--quiet")

    def effects(*extra: str) -> dict:
        res = run_pai(*common, *extra)
        assert res.returncode == 0, res.stderr
        return json.loads((copy / "analysis" / "effects.json").read_text())

    whole = effects()
    every_dim = effects("--action-dims", "0", "1", "2")  # the tiny policy acts in x, y, gripper
    assert every_dim["action_dims"] == [0, 1, 2] and every_dim["horizon"] is None
    by_feature = {r["feature"]: r["ablate_effect"] for r in whole["features"]}
    assert all(r["ablate_effect"] == pytest.approx(by_feature[r["feature"]], rel=1e-5) for r in every_dim["features"])
    gripper = effects("--action-dims", "2", "--horizon", "3")
    assert gripper["action_dims"] == [2] and gripper["horizon"] == 3
    assert "action dimensions [2], its first 3 actions" in gripper["units"]
    assert [r["ablate_effect"] for r in gripper["features"]] != [r["ablate_effect"] for r in whole["features"]]
    from pai_ros.features.results import ResultsDir
    from pai_ros.ui.browser import FeatureBrowser

    summary = FeatureBrowser(ResultsDir(copy)).summary_markdown()
    assert "effects on action dimension(s) 2 over the next 3 actions" in summary
    # One feature has no rank correlation (null in effects.json): the page says n/a, not a TypeError.
    one = effects("--top-features", "1")
    assert len(one["features"]) == 1 and one["rank_correlation_effect_vs_activation"] is None
    assert "rank correlation with this ranking n/a (one feature," in FeatureBrowser(ResultsDir(copy)).summary_markdown()
    for bad, why in ((("--action-dims", "3"), "the policy's actions have 3 dimensions"),
                     (("--action-dims", "1", "1"), "--action-dims must be distinct"),
                     (("--horizon", "0"), "--horizon must be at least 1"),
                     (("--horizon", "100000"), "the policy predicts chunks of")):
        res = run_pai(*common, *bad)
        assert res.returncode == 1 and why in res.stderr and "Traceback" not in res.stderr, res.stderr
    # Said before the frames are read: with the recorded dataset gone, the option is still what is refused.
    record = json.loads((copy / "record.json").read_text())
    (copy / "record.json").write_text(json.dumps({**record, "dataset_root": str(tmp_path / "gone")}))
    res = run_pai(*common, "--horizon", "100000")
    assert res.returncode == 1, res.stderr
    assert "--horizon 100000: the policy predicts chunks of 10 actions" in res.stderr, res.stderr


def test_rank_correlation_averages_ties_and_is_not_measured_without_a_ranking() -> None:
    """Effects are often exactly 0: ties must not keep the activation order (all-zero effects gave 1.0)."""
    import numpy as np

    from pai_ros.features.effects import spearman

    activation = np.array([8.0, 7.0, 6.0, 5.0, 4.0])
    assert spearman(np.zeros(5), activation) is None  # nothing changed: no ranking by effect to compare
    assert spearman(activation, np.ones(5)) is None
    assert spearman(np.array([1.0]), np.array([2.0])) is None
    # scipy.stats.spearmanr([1, 2, 2, 3, 0, 0], [6, 5, 4, 3, 2, 1]).statistic, written out: average ranks
    # [3, 4.5, 4.5, 6, 1.5, 1.5] against [6, 5, 4, 3, 2, 1].
    assert spearman(np.array([1.0, 2, 2, 3, 0, 0]), np.array([6.0, 5, 4, 3, 2, 1])) == pytest.approx(0.4413674148)
    assert spearman(activation, activation) == pytest.approx(1.0)


def test_equal_effects_share_a_rank() -> None:
    import numpy as np

    from pai_ros.features.effects import effect_ranks

    assert effect_ranks(np.array([0.0, 0.3, 0.0, 0.5, 0.3, 0.0])).tolist() == [4, 2, 4, 1, 2, 4]
    assert effect_ranks(np.zeros(3)).tolist() == [1, 1, 1]
    # A non-finite effect is no measurement: last, not first (every comparison with NaN is False).
    assert effect_ranks(np.array([np.nan, 0.5, 0.0, np.inf])).tolist() == [3, 1, 2, 3]


def test_the_rank_correlation_leaves_out_non_finite_effects() -> None:
    import numpy as np

    from pai_ros.features.effects import spearman

    assert spearman(np.array([3.0, 2.0, 1.0, np.nan]), np.array([1.0, 2.0, 3.0, 4.0])) == -1.0
    assert spearman(np.array([np.nan, 1.0, np.nan]), np.array([1.0, 2.0, 3.0])) is None  # one pair left


def test_the_browser_shows_effects_of_this_analysis_only(recording: Path, tmp_path: Path) -> None:
    from pai_ros.features.results import ResultsDir
    from pai_ros.ui.browser import FeatureBrowser

    copy = tmp_path / "rec"
    shutil.copytree(recording, copy)
    browser = FeatureBrowser(ResultsDir(copy))
    if not (copy / "analysis" / "effects.json").exists():
        pytest.skip("needs the effects of the previous test")
    feature = next(iter(browser.features))
    assert "action change when ablated" in browser.statistics_markdown(feature)
    assert "effects on the actions measured" in browser.summary_markdown()
    # A new analysis makes the effects stale: they disappear rather than mislabel other features.
    res = run_pai("features", "analyse", str(copy), "--top-features", "4", "--no-thumbnails", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "action change" not in FeatureBrowser(ResultsDir(copy)).statistics_markdown(feature)


def test_effects_need_a_recording_with_frames(tmp_path: Path) -> None:
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "analysis.json").write_text(json.dumps({"features": [], "sae_id": "x"}))
    res = run_pai("features", "effects", str(tmp_path))
    assert res.returncode == 1 and "no record.json" in res.stderr and "Traceback" not in res.stderr
    res = run_pai("features", "effects", str(tmp_path), "--frames", "0")
    assert res.returncode == 1 and "--frames must be at least 1" in res.stderr


def test_effects_say_when_the_recorded_sae_has_moved(recording: Path, tmp_path: Path) -> None:
    """It said "SAE directory not found (train one with `pai sae train`)", with no option to point at it."""
    import shutil

    copy = tmp_path / "rec"
    shutil.copytree(recording, copy)
    record = json.loads((copy / "record.json").read_text())
    record["sae_path"] = str(tmp_path / "moved_away")
    (copy / "record.json").write_text(json.dumps(record))
    res = run_pai("features", "effects", str(copy), "--quiet")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert (f"the SAE this recording was made with, {tmp_path / 'moved_away'} (record.json: sae_path), is not "
            "there any more") in res.stderr


def test_effects_refuse_an_analysis_before_loading_the_policy(recording: Path, tmp_path: Path) -> None:
    # What the analysis alone settles is said before the policy loads (seconds to minutes for a real one):
    # here the recorded policy directory is empty, so loading it first would give another refusal.
    copy = tmp_path / "rec"
    shutil.copytree(recording, copy)
    analysis = json.loads((copy / "analysis" / "analysis.json").read_text())
    (copy / "analysis" / "analysis.json").write_text(json.dumps({**analysis, "features": []}))
    record = json.loads((copy / "record.json").read_text())
    (tmp_path / "empty_policy").mkdir()
    (copy / "record.json").write_text(json.dumps({**record, "policy_path": str(tmp_path / "empty_policy")}))
    res = run_pai("features", "effects", str(copy), "--quiet")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"the analysis in {copy} ranks no feature (none fired)" in res.stderr, res.stderr


# ------------------------------------------------------------------ an interrupted recording

def _record_until_interrupted(tiny_act: Path, tiny_sae: Path, root: Path, episodes: list[int], out: Path,
                              stop_at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pai features record` as Ctrl-C leaves it: KeyboardInterrupt when it reaches episode ``stop_at``."""
    from pai_ros.features import record
    from pai_ros.policy.runner import activations_runner
    from pai_ros.sae.model import load_sae

    original = record.record_episode

    def interrupted(runner, loaded, dataset, episode, *args, **kwargs):
        if episode == stop_at:
            raise KeyboardInterrupt
        return original(runner, loaded, dataset, episode, *args, **kwargs)

    monkeypatch.setattr(record, "record_episode", interrupted)
    runner = activations_runner(tiny_act, "cpu")
    try:
        with pytest.raises(KeyboardInterrupt):
            record.record_features(runner, load_sae(tiny_sae), root, episodes, out, progress=False)
    finally:
        runner.close()


def _analyse_notes(results: Path) -> list[str]:
    res = run_pai("features", "analyse", str(results), "--top-features", "4", "--no-thumbnails", "--quiet")
    assert res.returncode == 0 and "analysis written to" in res.stdout, res.stderr
    return [line for line in res.stderr.splitlines() if line.startswith("note: ")]


def test_an_interrupted_recording_says_which_episodes_it_lacks(tiny_act: Path, tiny_sae: Path, tiny_dataset,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after 1 of 3 episodes, record.json kept the finished one only: the analysis looked complete."""
    from pai_ros.features.results import ResultsDir
    from pai_ros.ui.browser import FeatureBrowser

    root, _ = tiny_dataset
    out = tmp_path / "rec"
    _record_until_interrupted(tiny_act, tiny_sae, root, [0, 1, 2], out, 1, monkeypatch)
    record = json.loads((out / "record.json").read_text())
    assert record["episodes"] == [0] and record["requested_episodes"] == [0, 1, 2]
    notes = _analyse_notes(out)
    assert len(notes) == 1, notes
    assert f"{out} lacks 2 of the episodes `pai features record` was asked for (1, 2: interrupted?)" in notes[0]
    # The truth about a re-run: it records every episode it is given, the finished ones again.
    assert "with --episode naming only those adds them (the same command as before records every episode" in notes[0]
    assert "(1, 2: interrupted?)" in FeatureBrowser(ResultsDir(out)).summary_markdown()


def test_a_rerun_stopped_in_its_first_episode_keeps_what_it_was_asked_for(
        recording: Path, tiny_act: Path, tiny_sae: Path, tiny_dataset, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Written only once an episode finished, a re-run's request was lost when it stopped before that."""
    root, _ = tiny_dataset
    copy = tmp_path / "rec"
    shutil.copytree(recording, copy)
    assert json.loads((copy / "record.json").read_text())["requested_episodes"] == [0, 1]
    assert _analyse_notes(copy) == []  # every asked-for episode is there: nothing to say
    _record_until_interrupted(tiny_act, tiny_sae, root, [0, 1, 2], copy, 0, monkeypatch)
    assert json.loads((copy / "record.json").read_text())["requested_episodes"] == [0, 1, 2]
    notes = _analyse_notes(copy)
    assert len(notes) == 1 and "lacks 1 of the episodes `pai features record` was asked for (2: " in notes[0], notes
    # A record.json from before the list: analysed as before, with no note.
    record = json.loads((copy / "record.json").read_text())
    del record["requested_episodes"]
    (copy / "record.json").write_text(json.dumps(record))
    assert _analyse_notes(copy) == []
