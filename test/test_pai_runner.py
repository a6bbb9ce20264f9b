"""The tests' `pai` runner (pai_runner.py, helpers/pai_forkserver.py) answers as a fresh interpreter would:
every other CLI test trusts it for exit statuses, output and refusals."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pai_runner
import pytest
from pai_runner import NOT_COMPARED, REPO, ForkServer, _fork_server, command, run_pai


def server() -> ForkServer:
    forks = _fork_server()
    assert forks is not None, pai_runner.unavailable  # the suite would run, slower: these tests say why
    return forks


def fresh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command(list(args)), capture_output=True, text=True, env=env, timeout=120, cwd=REPO)


@pytest.mark.parametrize("argv", [
    ["--help"],  # exit 0 from argparse's SystemExit, stdout
    ["nosuch"],  # exit 2, a usage line on stderr
    ["demo", "--rate-factor", "0"],  # our own one-line refusal, exit 1
    ["sae", "train", "--activations", "/nonexistent/acts", "--output", "/nonexistent/out"],  # after torch's import
])
def test_a_forked_command_answers_as_a_fresh_interpreter(argv: list[str]) -> None:
    forked, alone = server().run(argv, os.environ, 120), fresh(*argv)
    assert (forked.returncode, forked.stdout, forked.stderr) == (alone.returncode, alone.stdout, alone.stderr)
    assert forked.returncode == (0 if argv == ["--help"] else 2 if argv == ["nosuch"] else 1)


def test_the_command_runs_in_the_tests_environment_and_another_one_in_a_fresh_interpreter(tmp_path: Path,
                                                                                          monkeypatch) -> None:
    """`pai` expands a ~ the shell left alone with HOME: the forked child must see the test's HOME now."""
    home = tmp_path / "home"
    home.mkdir()
    argv = ["sae", "train", "--activations", "~/missing", "--output", str(tmp_path / "out")]
    forks = server()
    monkeypatch.setenv("HOME", str(home))
    # The environment goes with each command (run_pai sends it when it matches the server's): the child reads it.
    res = forks.run(argv, os.environ, 120)
    assert res.returncode == 1 and str(home / "missing") in res.stderr, res.stderr
    # run_pai with a changed environment: a fresh interpreter, with the same answer.
    counted = forks.commands_run
    res = run_pai(*argv)
    assert res.returncode == 1 and str(home / "missing") in res.stderr, res.stderr
    assert forks.commands_run == counted


def test_a_command_past_its_timeout_is_killed_and_reported_as_subprocess_would(tiny_dataset, tiny_act,
                                                                              tmp_path: Path) -> None:
    root, _ = tiny_dataset
    # Integrated gradients with 512 steps over 12 frames: minutes of work, killed after half a second.
    argv = ["attention", "--dataset-root", str(root), "--episode", "0", "--policy-path", str(tiny_act),
            "--method", "integrated_gradients", "--ig-steps", "512", "--output-dir", str(tmp_path / "att")]
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as err:
        server().run(argv, os.environ, 0.5)
    assert time.monotonic() - started < 30 and err.value.cmd[1:3] == ["-m", "pai_ros.cli"]
    # The server goes on: the next command runs.
    assert server().run(["--help"], os.environ, 120).returncode == 0


def test_run_pai_forks_in_the_servers_environment_and_fresh_processes_can_be_asked_for(monkeypatch) -> None:
    forks = server()
    counted = forks.commands_run
    # The server's environment, given explicitly: whatever earlier tests left in os.environ, this one forks.
    same = {**forks.env, **{k: v for k, v in os.environ.items() if k in NOT_COMPARED}}
    assert run_pai("demo", "--rate-factor", "0", env=same).returncode == 1 and forks.commands_run == counted + 1
    monkeypatch.setenv("PAI_TEST_FRESH_PROCESSES", "1")
    res = run_pai("demo", "--rate-factor", "0", env=same)
    assert res.returncode == 1 and res.stderr.startswith("pai demo: error:"), res.stderr
    assert forks.commands_run == counted + 1
