"""Outputs appear only when complete: a failed write leaves the previous output, and no leftovers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pai_ros.errors import UserError
from pai_ros.jsonfile import write_json_atomic
from pai_ros.staging import (
    check_only_own_entries,
    make_output_dir,
    output_directory,
    remove_all_staging_under,
    staged_directory,
    staged_file,
)


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_staged_file_replaces_the_old_one_only_when_the_block_succeeds(tmp_path: Path) -> None:
    final = tmp_path / "weights.safetensors"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with staged_file(final) as tmp:
            tmp.write_text("half of the new")
            assert not final.read_text().startswith("half")  # the reader still sees the old file
            raise RuntimeError("writer died")
    assert final.read_text() == "old" and _hidden(tmp_path) == []
    with staged_file(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".weights.safetensors.tmp-")
        tmp.write_text("new")
    assert final.read_text() == "new" and _hidden(tmp_path) == []


def test_json_that_cannot_be_written_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    write_json_atomic(path, {"k": 32})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"k": object()})
    assert json.loads(path.read_text()) == {"k": 32} and _hidden(tmp_path) == []


def test_json_files_are_strict_json_with_null_for_nan(tmp_path: Path) -> None:
    """Python writes NaN/Infinity by default, which a browser's JSON.parse or jq refuses for the whole file."""
    path = tmp_path / "effects.json"
    write_json_atomic(path, {"rho": float("nan"), "rows": [1.5, float("inf"), (float("-inf"), 2)], "n": 3})

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {"rho": None, "rows": [1.5, None, [None, 2]],
                                                                   "n": 3}


def test_a_staged_directory_swaps_in_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "sae"
    final.mkdir()
    (final / "cfg.json").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_directory(final) as partial:
            (partial / "cfg.json").write_text("new")
            raise RuntimeError("training died")
    assert (final / "cfg.json").read_text() == "old" and _hidden(tmp_path) == []
    with staged_directory(final) as partial:
        (partial / "cfg.json").write_text("new")
        (partial / "weights").write_text("w")
    assert sorted(p.name for p in final.iterdir()) == ["cfg.json", "weights"]
    assert (final / "cfg.json").read_text() == "new" and _hidden(tmp_path) == []


def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".out.partial-123").mkdir()
    (tmp_path / ".out.old-123").write_text("x")
    (tmp_path / "out").mkdir()
    remove_all_staging_under(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_next_write_of_an_output_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    """A killed run's hidden siblings go when the same output is written again; a live writer's stay."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    gone = int(dead.stdout)  # a process that has exited: its pid names no live process (until reused)
    for name in (f".episode_000006.partial-{gone}", f".episode_000006.old-{gone}"):
        (tmp_path / name).mkdir()
    (tmp_path / f".episode_000006.tmp-{gone}").write_text("half")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f".episode_000006.partial-{live.pid}").mkdir()  # another process writing it now
        (tmp_path / f".episode_000007.partial-{gone}").mkdir()      # another output: not ours to judge
        with staged_directory(tmp_path / "episode_000006") as staged:
            (staged / "done").write_text("ok")
        assert _hidden(tmp_path) == sorted([f".episode_000006.partial-{live.pid}", f".episode_000007.partial-{gone}"])
        assert (tmp_path / "episode_000006" / "done").read_text() == "ok"
    finally:
        live.kill()
        live.wait()


def test_a_failed_run_removes_the_output_directories_it_created_while_empty(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), output_directory(tmp_path / "a" / "b" / "c") as out:
        assert out.is_dir()
        raise RuntimeError("the run failed")
    assert not (tmp_path / "a").exists()  # all three levels were made by the run, and all were empty
    # What a failed run finished stays, and so does every directory on its path.
    with pytest.raises(RuntimeError), output_directory(tmp_path / "x" / "y") as out:
        (out / "episode_000000").mkdir()
        raise RuntimeError("the second episode failed")
    assert (tmp_path / "x" / "y" / "episode_000000").is_dir()
    # A directory that was there before the run is never removed, even when it is empty.
    (tmp_path / "mine").mkdir()
    with pytest.raises(RuntimeError), output_directory(tmp_path / "mine"):
        raise RuntimeError("failed")
    assert (tmp_path / "mine").is_dir()
    with output_directory(tmp_path / "ok") as out:  # a run that succeeds keeps its (empty) output
        pass
    assert out.is_dir()


def test_the_working_directory_as_output_is_refused_before_any_work(tmp_path: Path, monkeypatch) -> None:
    """Replacing it renames it aside, which the system refuses (EBUSY) only after all the work."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    for given in (Path("."), out, tmp_path):
        with pytest.raises(UserError, match="is the current directory or contains it"):
            with staged_directory(given):
                raise AssertionError("the work must not start")
    assert out.is_dir()


def test_a_staged_file_gets_the_mode_of_new_files(tmp_path: Path) -> None:
    """safetensors writes owner-only (0600) files: a policy node of another user could not read the SAE."""
    import os

    import numpy as np
    from safetensors.numpy import save_file

    mask = os.umask(0o022)
    os.umask(mask)
    final = tmp_path / "w.safetensors"
    with staged_file(final) as tmp:
        save_file({"w": np.zeros(3, np.float32)}, str(tmp))
    assert final.stat().st_mode & 0o777 == 0o666 & ~mask


def test_per_episode_commands_refuse_each_others_directories(tmp_path: Path) -> None:
    """attention and features record both write episode_NNNNNN/: each replaced the other's without a word."""
    from pai_ros.attention.offline import check_output_dir
    from pai_ros.staging import check_no_other_results

    features = tmp_path / "features"
    (features / "episode_000004").mkdir(parents=True)
    (features / "record.json").write_text("{}")
    settings = {"policy_path": tmp_path / "policy", "dataset_root": tmp_path / "data", "method": "cross_attention",
                "queries": "mean"}
    with pytest.raises(UserError, match="holds recorded features"):
        check_output_dir(features, **settings)
    attention = tmp_path / "attention"
    (attention / "episode_000004").mkdir(parents=True)
    summary = {k: str(Path(v).resolve()) if k.endswith(("path", "root")) else v for k, v in settings.items()}
    (attention / "episode_000004" / "summary.json").write_text(json.dumps(summary))
    check_output_dir(attention, **settings)  # the same run again: its episodes are replaced, as meant
    with pytest.raises(UserError, match=r"holds attention made with other settings \(episode_000004: method "
                                        r"cross_attention; now rollout\)"):
        check_output_dir(attention, **{**settings, "method": "rollout"})
    with pytest.raises(UserError, match="holds attention made with other settings .episode_000004: policy path"):
        check_output_dir(attention, **{**settings, "policy_path": tmp_path / "other"})
    for mine in ("recorded features (pai features record)", "SAE activations (pai sae collect)"):
        with pytest.raises(UserError, match=r"holds attention \(pai attention\); write into another output"):
            check_no_other_results(attention, mine)
    check_no_other_results(features, "recorded features (pai features record)")  # its own: fine


def test_a_shard_is_whole_only_when_its_header_and_data_are_all_there(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from pai_ros.sae.activations import shard_is_whole

    shard = tmp_path / "s.safetensors"
    save_file({"activations": np.zeros((10, 4), np.float16)}, str(shard))
    assert shard_is_whole(shard)
    data = shard.read_bytes()
    for broken in (data[:-1], data[:20], b"", (2).to_bytes(8, "little") + b"[]", (1).to_bytes(8, "little") + b"7"):
        shard.write_bytes(broken)
        assert not shard_is_whole(shard), broken[:16]


def test_a_png_is_written_in_rgb_order_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2
    import numpy as np

    from pai_ros.media.png import write_png

    red = np.zeros((6, 8, 3), np.uint8)
    red[..., 0] = 255
    path = write_png(tmp_path / "sheet.png", red)
    back = cv2.imread(str(path))  # OpenCV reads BGR: the red must land in its last channel
    assert back.shape == (6, 8, 3) and back[..., 2].min() == 255 and back[..., :2].max() == 0
    before = path.read_bytes()

    def fail(self: Path, data: bytes) -> int:
        self.open("wb").write(data[: len(data) // 2])  # half of the picture, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", fail)
    with pytest.raises(OSError, match="disk full"):
        write_png(path, np.zeros((6, 8, 3), np.uint8))
    monkeypatch.undo()
    assert path.read_bytes() == before and _hidden(tmp_path) == []  # the old picture, no half-written one beside it
    with pytest.raises(ValueError, match=r"RGB uint8 image of shape \(H, W, 3\)"):
        write_png(tmp_path / "grey.png", np.zeros((6, 8), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        write_png(tmp_path / "float.png", np.zeros((6, 8, 3), np.float32))
    assert not (tmp_path / "grey.png").exists() and not (tmp_path / "float.png").exists()


def test_an_earlier_output_with_added_files_is_not_replaced(tmp_path: Path) -> None:
    from pai_ros.staging import check_replaceable, unwritten_files, write_manifest

    out = tmp_path / "tables"
    (out / "sub").mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    (out / "sub" / "a.parquet").write_text("a")
    assert unwritten_files(out) is None  # no manifest: an output from before manifests
    write_manifest(out)
    assert unwritten_files(out) == []
    settings = {"made_by": "bag2parquet", "what_marks_it": "summary.json", "is_mine": lambda d: True}
    check_replaceable(out, True, **settings)  # all its own: replaceable
    (out / "sub" / "analysis.json").write_text("added later")
    (out / "names.json").write_text("added later")
    assert unwritten_files(out) == ["names.json", "sub/analysis.json"]
    with pytest.raises(UserError, match=r"holds file\(s\) that bag2parquet did not write \(names.json, "
                                        r"sub/analysis.json\); --overwrite deletes only what it wrote"):
        check_replaceable(out, True, **settings)
    check_replaceable(out, True, **settings, keep=("names.json", "sub/analysis.json"))  # a command that keeps them
    check_replaceable(out, True, **settings, keep=("names.json",), derived=("sub/*",))  # or makes them again
    (out / ".names.json.tmp-4242").write_text("a killed writer's leftover")  # nobody's work: not counted
    assert unwritten_files(out) == ["names.json", "sub/analysis.json"]
    (out / ".pai_written.json").write_text("{damaged")  # can no longer tell what was added: nothing is deleted
    with pytest.raises(UserError, match=r"the list of the files written there, is damaged"):
        check_replaceable(out, True, **settings)


def test_files_added_while_a_command_replaces_its_output_are_kept(tmp_path: Path) -> None:
    from pai_ros.staging import MANIFEST_FILE, output_files, write_manifest

    out = tmp_path / "tables"
    out.mkdir()
    (out / "summary.json").write_text("old")
    (out / "old_only.parquet").write_text("old")
    write_manifest(out)
    checked = output_files(out)  # when the command checks the output, before its work
    # Meanwhile (an hour-long conversion, before the staged block even starts): the user drops notes in.
    (out / "notes").mkdir()
    (out / "notes" / "why.txt").write_text("mine")
    with staged_directory(out, checked=checked, discard=("ood*.json",)) as partial:
        (partial / "summary.json").write_text("new")
        (out / "ood.json").write_text("a calibration of the old output")  # goes with it
        write_manifest(partial)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        [MANIFEST_FILE, "notes/why.txt", "summary.json"]
    assert (out / "notes" / "why.txt").read_text() == "mine" and (out / "summary.json").read_text() == "new"
    assert _hidden(tmp_path) == []
    # Another run of the same command that swapped its output in meanwhile is replaced, not carried over
    # (the user's files present at the start were refused by check_replaceable before the work: moved out):
    shutil.rmtree(out / "notes")
    checked = output_files(out)
    with staged_directory(out, checked=checked) as partial:
        (partial / "summary.json").write_text("newest")
        (out / "episode_2.parquet").write_text("the other run's")
        (out / MANIFEST_FILE).write_text(json.dumps(["summary.json", "episode_2.parquet"]))  # that run's own
    assert not (out / "episode_2.parquet").exists() and (out / "summary.json").read_text() == "newest"
    # Without checked (commands that never checked for the user's files) the old output goes whole.
    with staged_directory(out) as partial:
        (partial / "summary.json").write_text("plain")
        (out / "late.txt").write_text("added")
    assert not (out / "late.txt").exists() and (out / "summary.json").read_text() == "plain"


def test_a_file_added_that_cannot_join_the_new_output_keeps_the_previous_one_beside_it(tmp_path: Path) -> None:
    # The work is never thrown away for it, nor the user's file: the new output is swapped in, and the
    # previous one, holding the file, stays under a visible name (a hidden one is removed as a leftover).
    from pai_ros.staging import output_files

    out = tmp_path / "sae"
    out.mkdir()
    (out / "cfg.json").write_text("old")
    checked = output_files(out)
    for n, (added, new_file) in enumerate((("metrics.json", "metrics.json"), ("plots/a.png", "plots")), start=1):
        kept = tmp_path / ("sae.previous" if n == 1 else f"sae.previous-{n}")
        with pytest.raises(UserError, match=rf"{out} is written, but file\(s\) added to it while the command ran "
                                            rf"\({added}\) could not be moved into it .* kept as {kept}$"):
            with staged_directory(out, checked=checked) as partial:
                (partial / "cfg.json").write_text("new")
                (partial / new_file).write_text("new")  # a file where the added one's folder would go, too
                (out / added).parent.mkdir(exist_ok=True)
                (out / added).write_text("mine")
        assert (out / "cfg.json").read_text() == "new" and (kept / added).read_text() == "mine"
        assert _hidden(tmp_path) == []
        for written in ("metrics.json", "plots"):  # the new output's own files (no manifest in this test)
            (out / written).unlink(missing_ok=True)


def test_an_os_error_is_said_about_the_users_path_not_a_staging_name(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from pai_ros.staging import describe_os_error

    out = tmp_path / "tables"
    staged = OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".tables.partial-9243" / "a.parquet"))
    assert describe_os_error(staged) == f"cannot write the output {out}: Read-only file system"
    tmp_file = OSError(errno.EACCES, "Permission denied", str(tmp_path / ".ood.json.tmp-77"))
    assert describe_os_error(tmp_file) == f"cannot write the output {tmp_path / 'ood.json'}: Permission denied"
    plain = OSError(errno.ENOENT, "No such file or directory", "/nowhere/x")
    assert describe_os_error(plain) == "No such file or directory: /nowhere/x"
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device")) == \
        "No space left on device (while writing an output)"
    assert describe_os_error(OSError(errno.EIO, "Input/output error")) == "Input/output error"  # maybe a read
    shard = tmp_path / "acts" / "episode_000003_part0001.safetensors"
    shard.parent.mkdir()
    with pytest.raises(OSError) as raised:
        with staged_file(shard):
            raise OSError(errno.ENOSPC, "No space left on device")  # as safetensors' writer says it: no file
    assert describe_os_error(raised.value) == f"cannot write the output {shard}: No space left on device"
    assert list(shard.parent.iterdir()) == []
    # safetensors says a full disk in its own error type, the number in its text only (was a traceback).
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    full = tmp_path / "full"
    full.mkdir()
    with pytest.raises(OSError) as raised:
        with staged_file(full / "sae_weights.safetensors") as tmp:
            save_file({"w": torch.zeros(4)}, str(tmp))
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert raised.value.errno == errno.ENOSPC
    assert describe_os_error(raised.value) == \
        f"cannot write the output {full / 'sae_weights.safetensors'}: No space left on device"
    assert list(full.iterdir()) == []
    # pyarrow's writers on a full disk name no file either: said as the output directory being written, when
    # its filesystem is the full one (else a cache or /tmp filled up: said as raised).
    import pai_ros.staging as staging

    full_here = OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
    with pytest.raises(OSError) as raised:
        with staged_directory(tmp_path / "tables"):
            raise full_here
    assert raised.value is full_here  # tmp_path has room: another filesystem was full
    monkeypatch.setattr(staging, "_has_room", lambda path: False)
    with pytest.raises(OSError) as raised:
        with staged_directory(tmp_path / "tables"):
            raise full_here
    assert describe_os_error(raised.value) == f"cannot write the output {tmp_path / 'tables'}: No space left on device"
    monkeypatch.undo()
    with pytest.raises(OSError) as raised:  # another error without a file may be about an input: as raised
        with staged_directory(tmp_path / "tables"):
            raise OSError(errno.EIO, "Input/output error")
    assert raised.value.filename is None and not (tmp_path / "tables").exists()
    with pytest.raises(ValueError, match="not a system error"):  # anything else goes on as raised
        with staged_file(full / "x.json"):
            raise ValueError("not a system error")


def test_an_output_below_a_file_is_said_as_such(tmp_path: Path) -> None:
    # mkdir says only "File exists (afile)", which reads as if the output existed.
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match=r"cannot create the output directory .*afile/x/y: .*afile is a file"):
        make_output_dir(tmp_path / "afile" / "x" / "y")


def test_a_per_episode_output_refuses_a_directory_of_the_users_files(tmp_path: Path) -> None:
    """`pai attention` and `pai features record` wrote episode folders among ~/Documents' files."""
    out = tmp_path / "out"
    check_only_own_entries(out, ("episode_",), "pai attention", "--output-dir")  # not there yet: fine
    out.mkdir()
    (out / "episode_000000").mkdir()
    (out / ".episode_000001.partial-9").mkdir()  # a staging leftover is not the user's
    check_only_own_entries(out, ("episode_",), "pai attention", "--output-dir")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"out holds other files \(notes.txt\) and is not a `pai attention` "
                                        r"directory: choose a new --output-dir"):
        check_only_own_entries(out, ("episode_",), "pai attention", "--output-dir")


def test_features_record_keeps_to_its_family_of_files(tmp_path: Path) -> None:
    """Names given in the browser outlive a re-recording (pai demo keeps features/names.json); a note does not."""
    from pai_ros.features.record import open_output

    out = tmp_path / "features"
    out.mkdir()
    (out / "names.json").write_text("{}")
    open_output(out, {"sae_id": "s", "policy_path": "p", "dataset_root": "d", "top_n": 5})
    other = tmp_path / "other"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(UserError, match="is not a `pai features record` directory"):
        open_output(other, {"sae_id": "s", "policy_path": "p", "dataset_root": "d", "top_n": 5})
