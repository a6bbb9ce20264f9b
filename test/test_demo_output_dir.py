"""`pai demo --output-dir`: what it may replace (pai_ros.demo.output_dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pai_ros.errors import UserError


def test_overwrite_replaces_only_an_earlier_demo(tmp_path: Path) -> None:
    from pai_ros.demo.output_dir import DEMO_MARKER, REPORT_FILE, prepare_output_dir

    out = prepare_output_dir(tmp_path / "demo", overwrite=False)
    assert (out / DEMO_MARKER).is_file()
    (out / "bag").mkdir()
    # Interrupted (Ctrl-C): no report.json. Said as such, and --overwrite replaces it.
    with pytest.raises(UserError, match="holds an unfinished demo run"):
        prepare_output_dir(out, overwrite=False)
    (out / REPORT_FILE).write_text("{}")
    with pytest.raises(UserError, match="holds an earlier pai demo output; choose a new path or pass --overwrite"):
        prepare_output_dir(out, overwrite=False)
    prepare_output_dir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [DEMO_MARKER]
    # A demo output from before the marker (its bag, tables and report) is still recognised.
    old = tmp_path / "old"
    (old / "bag").mkdir(parents=True)
    (old / "parquet").mkdir()
    (old / REPORT_FILE).write_text('{"ticks": 21}')
    prepare_output_dir(old, overwrite=True)
    assert sorted(p.name for p in old.iterdir()) == [DEMO_MARKER]
    # Anything else stays, --overwrite or not (a directory with a bag/ of its own too): it used to be deleted.
    mine = tmp_path / "mine"
    (mine / "bag").mkdir(parents=True)
    (mine / "thesis.tex").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="is not an earlier pai demo output"):
            prepare_output_dir(mine, overwrite=overwrite)
    assert (mine / "thesis.tex").read_text() == "mine"


def test_overwrite_keeps_the_feature_names_and_refuses_other_added_files(tmp_path: Path) -> None:
    """`make demo` always overwrites: names given in `pai features ui out/demo/features` used to be deleted."""
    from pai_ros.demo.output_dir import DEMO_MARKER, finish_output_dir, prepare_output_dir
    from pai_ros.staging import MANIFEST_FILE

    out = prepare_output_dir(tmp_path / "demo", overwrite=False)
    (out / "features" / "episode_000000").mkdir(parents=True)
    (out / "features" / "episode_000000" / "features.parquet").write_text("tables")
    (out / "bag").mkdir()
    (out / "bag" / "bag_0.mcap").write_text("bag")
    finish_output_dir(out, {"ticks": 3})
    names = out / "features" / "names.json"
    names.write_text('{"393": {"name": "gripper closing"}}')  # what the browser saves, after the run
    prepare_output_dir(out, overwrite=True)
    assert names.read_text() == '{"393": {"name": "gripper closing"}}'
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        [DEMO_MARKER, "features", "features/names.json"]
    # The next run's manifest leaves the kept names out: they stay the user's on every later run.
    finish_output_dir(out, {"ticks": 3})
    assert "features/names.json" not in (out / MANIFEST_FILE).read_text()
    prepare_output_dir(out, overwrite=True)
    assert names.is_file()
    # Any other file added to a finished demo output: refused, and nothing deleted.
    (out / "bag").mkdir()
    finish_output_dir(out, {"ticks": 3})
    (out / "bag" / "my_notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds file\(s\) that pai demo did not write \(bag/my_notes.txt\); "
                                        "--overwrite deletes only what it wrote"):
        prepare_output_dir(out, overwrite=True)
    assert (out / "bag" / "my_notes.txt").read_text() == "mine" and (out / "report.json").is_file()


@pytest.mark.ros  # pai_ros.ros imports rclpy
def test_an_episode_the_demo_lacks_is_refused_before_the_output_exists(toy_assets, tmp_path: Path) -> None:
    """It used to leave a marked, empty output behind that the corrected rerun refused as unfinished."""
    from pai_ros.ros.demo import run_demo

    with pytest.raises(UserError, match="episode 99"):
        run_demo(tmp_path / "demo", episode=99, assets=toy_assets, progress=False)
    assert not (tmp_path / "demo").exists()


def test_kept_feature_names_must_name_the_demos_sae_and_derived_analyses_go_with_the_demo(tmp_path: Path) -> None:
    import json

    from pai_ros.demo.output_dir import finish_output_dir, prepare_output_dir

    out = prepare_output_dir(tmp_path / "demo", overwrite=False, sae_id="aaaa")
    (out / "features").mkdir()
    (out / "features" / "record.json").write_text(json.dumps({"sae_id": "aaaa"}))
    finish_output_dir(out, {"ticks": 3})
    (out / "features" / "names.json").write_text('{"7": {"name": "gripper"}}')
    # `pai features effects out/demo/features` afterwards: computed from the demo's output, replaced with it.
    (out / "features" / "analysis").mkdir()
    (out / "features" / "analysis" / "effects.json").write_text("{}")
    prepare_output_dir(out, overwrite=True, sae_id="aaaa")
    assert (out / "features" / "names.json").is_file() and not (out / "features" / "analysis").exists()
    # The demo assets were rebuilt with another SAE: names keyed by feature number would label other features.
    (out / "features" / "record.json").write_text(json.dumps({"sae_id": "aaaa"}))
    finish_output_dir(out, {"ticks": 3})
    with pytest.raises(UserError, match=r"names the features of SAE aaaa, and the demo's SAE is now bbbb: move it "
                                        r"out first"):
        prepare_output_dir(out, overwrite=True, sae_id="bbbb")
    assert (out / "features" / "names.json").is_file() and (out / "report.json").is_file()


def test_the_parts_of_an_interrupted_demo_say_so_instead_of_sending_the_user_round(tmp_path: Path) -> None:
    """After Ctrl-C in `pai demo`, `pai features ui OUT/features` said to run `pai features analyse`, and
    that to run `pai features record`; the one thing to do is to run the demo again."""
    from pai_ros.demo.output_dir import REPORT_FILE, finish_output_dir, prepare_output_dir
    from pai_ros.features.results import ResultsDir

    out = prepare_output_dir(tmp_path / "demo", overwrite=False)
    again = (f"{out} is an unfinished `pai demo` run (no report.json: interrupted?); "
             f"`pai demo --output-dir {out} --overwrite`")
    with pytest.raises(UserError, match="results directory not found") as info:  # interrupted before the features
        ResultsDir(out / "features")
    assert again in str(info.value)
    (out / "features").mkdir()
    results = ResultsDir(out / "features")
    for read in (results.sources, results.analysis):
        with pytest.raises(UserError) as info:
            read()
        assert again in str(info.value) and "run `pai features" not in str(info.value)
    assert again in str(results.lacking("record.json", "record it"))
    # Finished, the same missing pieces get their own advice again.
    finish_output_dir(out, {"ticks": 3})
    assert (out / REPORT_FILE).is_file()
    with pytest.raises(UserError, match=r"has no analysis yet: run `pai features analyse .*` first$"):
        ResultsDir(out / "features").analysis()
    with pytest.raises(UserError, match=r"has no features.parquet: run `pai features record` or `pai bag2parquet`$"):
        ResultsDir(out / "features").sources()


def test_an_interrupted_demo_is_named_by_the_feature_commands_in_one_line(tmp_path: Path) -> None:
    from conftest import run_pai

    from pai_ros.demo.output_dir import prepare_output_dir

    out = prepare_output_dir(tmp_path / "demo", overwrite=False)
    (out / "features").mkdir()
    for command in (("features", "ui", str(out / "features"), "--port", "0"),
                    ("features", "analyse", str(out / "features"), "--quiet")):
        res = run_pai(*command, timeout=120)
        assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "is an unfinished `pai demo` run" in res.stderr and f"--output-dir {out} --overwrite" in res.stderr
