"""The `pai` command line: version, help, usage errors (real subprocesses)."""

import re

import pytest
from conftest import REPO, run_pai

import pai_ros


def test_version_matches_package_xml_and_setup() -> None:
    res = run_pai("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"pai {pai_ros.__version__}"
    package_xml = (REPO / "package.xml").read_text()
    assert f"<version>{pai_ros.__version__}</version>" in package_xml


def test_help_lists_subcommands() -> None:
    res = run_pai("--help")
    assert res.returncode == 0
    assert "demo-assets" in res.stdout
    assert re.search(r"usage: pai ", res.stdout)


def test_no_subcommand_is_a_usage_error() -> None:
    res = run_pai()
    assert res.returncode == 2
    assert "usage: pai" in res.stderr


def test_unknown_subcommand_is_one_clear_error() -> None:
    res = run_pai("frobnicate")
    assert res.returncode == 2
    assert "invalid choice: 'frobnicate'" in res.stderr
    assert "Traceback" not in res.stderr


def test_help_does_not_import_torch() -> None:
    # `pai --help` must stay instant: parsing imports no heavy library.
    import subprocess
    import sys

    code = "import sys; from pai_ros.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_demo_rate_factor_out_of_range_is_one_line_before_any_work(tmp_path) -> None:
    for bad in ("0", "1.5", "-1"):
        res = run_pai("demo", "--rate-factor", bad, "--output-dir", str(tmp_path / "out"))
        assert res.returncode != 0 and "Traceback" not in res.stderr
        assert "--rate-factor must lie in (0, 1]" in res.stderr, res.stderr
    res = run_pai("demo", "--closed-loop", "--rate-factor", "0.5", "--output-dir", str(tmp_path / "out"))
    assert res.returncode != 0 and "--rate-factor are for the replay demo" in res.stderr
    assert not (tmp_path / "out").exists()
    for option, value in (("--episodes", "2"), ("--seed", "1"), ("--rate-hz", "5")):  # used to be ignored
        res = run_pai("demo", option, value, "--output-dir", str(tmp_path / "out"))
        assert res.returncode == 1 and "--episodes, --seed and --rate-hz are for --closed-loop" in res.stderr, \
            res.stderr
    for bad in ("nan", "0", "-1"):  # a NaN duration ran an almost empty demo that looked complete
        res = run_pai("demo", "--duration", bad, "--output-dir", str(tmp_path / "out"))
        assert res.returncode == 1 and "--duration must be a positive number of seconds" in res.stderr, res.stderr
    # Refused before the demo assets are built (minutes), not by the replay afterwards.
    res = run_pai("demo", "--episode", "-1", "--output-dir", str(tmp_path / "out"))
    assert res.returncode == 1 and "--episode must be at least 0 (a held-out demo episode), got -1" in res.stderr
    assert not (tmp_path / "out").exists()


def test_a_port_out_of_range_is_a_usage_error(tmp_path) -> None:
    res = run_pai("features", "ui", str(tmp_path), "--port", "99999")  # not quietly 99999 mod 65536
    assert res.returncode == 2 and "argument --port: invalid port value: '99999'" in res.stderr, res.stderr


def test_the_browser_without_gradio_says_how_to_install_it(tmp_path) -> None:
    """`pip install .` leaves Gradio out (it is the `ui` extra): one line naming the install, not
    the ModuleNotFoundError traceback it was."""
    import os

    shadow = tmp_path / "no_gradio"
    shadow.mkdir()
    (shadow / "gradio.py").write_text('raise ModuleNotFoundError("No module named \'gradio\'", name="gradio")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    res = run_pai("features", "ui", str(tmp_path), env=env)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pai features ui: error: the feature browser needs Gradio"), lines
    assert 'pip install ".[ui]"' in lines[0]


def test_every_subcommand_uses_the_shared_help_layout() -> None:
    """`pai demo`, `pai demo-assets` and `pai bag recover` showed (default: None) until they used it too."""
    import argparse

    from pai_ros.cli import build_parser
    from pai_ros.cli_help import HelpFormatter

    def parsers(parser: argparse.ArgumentParser, name: str):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child_name, child in action.choices.items():
                    yield from parsers(child, f"{name} {child_name}")

    found = dict(parsers(build_parser(), "pai"))
    assert {"pai demo", "pai demo-assets", "pai bag recover", "pai sae train"} <= set(found)
    wrong = [name for name, parser in found.items() if name != "pai" and parser.formatter_class is not HelpFormatter]
    assert not wrong, wrong


def test_help_shows_real_defaults_once_and_no_none() -> None:
    for argv in (["attention"], ["sae", "train"], ["sae", "collect"], ["features", "record"], ["bag2dataset"]):
        res = run_pai(*argv, "--help")
        assert res.returncode == 0, res.stderr
        text = " ".join(res.stdout.split())
        assert "(default: None)" not in text and "(default: False)" not in text, argv
    attention = " ".join(run_pai("attention", "--help").stdout.split())
    assert attention.count("methods to compare (default:") == 1 and "random) (default:" not in attention
    assert "cross_attention (the default:" in attention  # --method's real default is still shown
    assert "mean (the default)" in attention and "(default: 20)" in attention  # those given where they apply
    demo = " ".join(run_pai("demo", "--help").stdout.split())
    assert "held-out demo episode to replay (default: 0)" in demo  # 0 == False hid it


def test_an_empty_output_path_is_refused_not_the_current_directory(tmp_path) -> None:
    # "$OUT" with OUT unset: Path("") is ".", and episodes, shards or tables went into the working directory.
    for argv in (["bag2parquet", str(tmp_path / "bag"), ""], ["attention", "--dataset-root", str(tmp_path),
                                                               "--episode", "0", "--policy-path", "p", "--output-dir", ""],
                 ["sae", "train", "--activations", "a", "--output", ""]):
        res = run_pai(*argv)
        assert res.returncode == 2 and "an empty path (an unset shell variable?); name the output" in res.stderr, argv


def test_a_tilde_the_shell_left_alone_is_the_home_directory(tmp_path) -> None:
    # --opt=~/x, "~/x" in quotes, a path from a script: the shell leaves the ~, and taken literally an
    # output became a folder named '~' in the working directory and an input was "not found" there.
    import os

    env = {**os.environ, "HOME": str(tmp_path)}
    for argv, said in ((["sae", "train", "--activations=~/acts", "--output=~/sae"], f"{tmp_path}/acts"),
                       (["features", "analyse", "~/results"], f"results directory not found: {tmp_path}/results"),
                       (["bag2parquet", "~/bag", "~/out"], f"bag not found: {tmp_path}/bag")):
        res = run_pai(*argv, env=env)
        assert res.returncode == 1 and said in res.stderr and "~" not in res.stderr, (argv, res.stderr)
    assert not (REPO / "~").exists()


def test_a_home_that_is_not_on_this_machine_is_one_line(tmp_path) -> None:
    # ~alice/... copied from another machine: pathlib raises RuntimeError, which was a traceback.
    res = run_pai("attention", "--dataset-root", str(tmp_path), "--episode", "0", "--policy-path",
                  "~nosuchuser_pai/ckpt", "--output-dir", str(tmp_path / "out"))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "~nosuchuser_pai/ckpt: ~nosuchuser_pai is no home directory on this machine" in res.stderr
    assert res.stderr.strip().count("\n") == 0, res.stderr


def test_a_misspelt_option_is_named_by_its_command_with_the_nearest_one(tmp_path) -> None:
    # "pai: error: unrecognized arguments" pointed at `pai --help`, which lists no command's options,
    # and a misspelt required option read only "the following arguments are required".
    common = ["attention", "--dataset-root", str(tmp_path), "--policy-path", "p", "--output-dir", str(tmp_path / "o")]
    for argv, said in (
        ([*common, "--episode", "0", "--methd", "input_gradient"],
         "pai attention: error: unrecognized arguments: --methd input_gradient; --methd: did you mean --method? "
         "(`pai attention --help` lists the options)"),
        ([*common, "--episodes", "0"], "pai attention: error: the following arguments are required: --episode; "
                                       "--episodes: did you mean --episode?"),
        ([*common, "--bogus=1"], "required: --episode; --bogus is not an option of pai attention"),
        (["sae", "train", "--activations", "a", "--output", "o", "--stepz", "5"],
         "pai sae train: error: unrecognized arguments: --stepz 5; --stepz: did you mean --steps?"),
        # Compared with their shared "--", unrelated names came close enough: --verbose was "--overwrite?".
        (["sae", "train", "--activations", "a", "--output", "o", "--verbose"],
         "pai sae train: error: unrecognized arguments: --verbose (`pai sae train --help` lists the options)"),
    ):
        res = run_pai(*argv)
        lines = res.stderr.splitlines()
        assert res.returncode == 2 and len(lines) == 1 and said in lines[0], (argv, res.stderr)


def test_ctrl_c_says_what_is_kept_and_what_to_do_next(monkeypatch, capsys) -> None:
    # "pai sae collect: interrupted" did not say that running it again resumes.
    from pai_ros import cli
    from pai_ros.sae import commands

    def stopped(args) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "_collect", stopped)
    monkeypatch.setattr(commands, "_train", stopped)
    assert cli.main(["sae", "collect", "--policy-path", "p", "--dataset-root", "d", "--output", "o"]) == 130
    assert capsys.readouterr().err == ("pai sae collect: interrupted; the episodes finished are kept: the same command "
                                       "resumes with the rest\n")
    assert cli.main(["sae", "train", "--activations", "a", "--output", "o"]) == 130
    assert capsys.readouterr().err == "pai sae train: interrupted\n"  # nothing of it is left to say anything about


def test_help_into_a_reader_that_stopped_is_no_traceback() -> None:
    """`ros2 run pai_ros sim_node --help | head -5` ended in a BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    for argv in ([sys.executable, "-m", "pai_ros.cli", "sae", "train", "--help"],
                 [sys.executable, "-m", "pai_ros.ros.sim_node", "--help"]):
        # A pipe whose reader has gone before anything is written: every write fails with EPIPE.
        read, write = os.pipe()
        os.close(read)
        proc = subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)
        os.close(write)
        assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, (argv, proc.stderr)
        assert proc.returncode == 0, (argv, proc.returncode, proc.stderr)  # help was given; the reader left


@pytest.mark.parametrize("argv, expected", [
    (("attention", "--mode", "foo"), "pai attention: error: argument --mode: invalid choice: 'foo'"),
    (("sae", "train", "--architecture", "foo"), "pai sae train: error: argument --architecture: invalid choice"),
    (("features", "effects", "R", "--action-dims", "x"), "pai features effects: error: argument --action-dims: "
                                                        "invalid int value: 'x'"),
    # argparse reads a value that starts with '-' (and is not a number) as an option.
    (("sae", "collect", "--policy-path", "p", "--dataset-root", "d", "--output", "o", "--max-disk", "-5GB"),
     "pai sae collect: error: argument --max-disk: expected one argument; -5GB was read as an option: a value "
     "that starts with '-' is given as --max-disk=-5GB"),
    (("sae", "collect", "--policy-path", "p", "--dataset-root", "d", "--output", "o", "--max-d", "-5GB"),
     "pai sae collect: error: argument --max-disk: expected one argument; -5GB was read as an option: a value "
     "that starts with '-' is given as --max-d=-5GB"),
    # A value left out (the next word is an option): no such hint.
    (("sae", "collect", "--policy-path", "p", "--dataset-root", "d", "--output", "--quiet"),
     "pai sae collect: error: argument --output: expected one argument (`pai sae collect --help`"),
    (("sae", "collect", "--policy-path", "p", "--dataset-root", "d", "--output", "--qui"),
     "pai sae collect: error: argument --output: expected one argument (`pai sae collect --help`"),
    (("sae", "collect", "--policy-path", "p", "--dataset-root", "d", "--output", "--overwrite"),
     "pai sae collect: error: argument --output: expected one argument (`pai sae collect --help`"),
])
def test_a_usage_error_is_one_line(argv: tuple[str, ...], expected: str) -> None:
    """argparse printed its whole usage block (up to 15 lines) above the one line that says what is wrong."""
    res = run_pai(*argv)
    lines = [s for s in res.stderr.splitlines() if s.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), res.stderr
    assert lines[0].endswith(" --help` lists the options)"), lines
