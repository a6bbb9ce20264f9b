"""Robot and GPU workstation as two hosts: replay_node on one, policy_node on the other, DDS over a link.

The hosts are two network namespaces joined by a veth pair (test/helpers/netns.py): discovery is
limited to the peer's address (ROS_STATIC_PEERS) and Fast DDS is held to UDP, so every image
and action has to cross the veth, whose kernel counters show what it cost. Needs root; skipped
with the reason otherwise.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.netns import NetnsUnavailable, TwoHosts, run_policy_across, two_hosts

pytestmark = pytest.mark.ros
CAMERAS = ["front", "wrist"]


@pytest.fixture
def hosts(ros_env: dict) -> Iterator[TwoHosts]:
    manager = two_hosts(tag=f"{os.getpid()}{ros_env['ROS_DOMAIN_ID']}")
    try:
        net = manager.__enter__()
    except NetnsUnavailable as exc:
        pytest.skip(f"cannot create network namespaces here: {exc}")
    try:
        yield net
    finally:
        manager.__exit__(None, None, None)


def _leftovers(net: TwoHosts) -> list[str]:
    """Namespaces or veth ends of `net` that still exist anywhere."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found = [h.namespace for h in (net.robot, net.gpu) if h.namespace in namespaces.split()]
    for host in (net.robot, net.gpu):
        if subprocess.run(["ip", "link", "show", "dev", host.interface], capture_output=True).returncode == 0:
            found.append(host.interface)
    return found


def test_link_is_removed_even_when_the_body_fails() -> None:
    try:
        with two_hosts(tag=f"t{os.getpid()}") as net:
            assert net.robot.counters().tx_bytes >= 0  # the link exists and is readable
            raise KeyError("boom")
    except NetnsUnavailable as exc:
        pytest.skip(f"cannot create network namespaces here: {exc}")
    except KeyError:
        pass
    assert _leftovers(net) == []


def test_policy_on_the_other_host_raw_and_compressed(hosts: TwoHosts, tiny_dataset, tiny_act: Path,
                                                     ros_env: dict) -> None:
    root, _ = tiny_dataset
    domain = int(ros_env["ROS_DOMAIN_ID"])
    common = dict(dataset_root=str(root), policy_path=str(tiny_act), cameras=CAMERAS,
                  state_names=["x", "y", "gripper"], window_actions=15)
    raw = run_policy_across(hosts, ros_env, domain, compressed=False, **common)
    compressed = run_policy_across(hosts, ros_env, domain, compressed=True, **common)

    pixels = 64 * 80 * 3
    for run in (raw, compressed):
        # Flow both ways: actions and both cameras' heatmaps came back to the robot over the link.
        assert run.actions >= 15 and run.heatmaps >= 1 and run.frames >= 1
        assert run.up.tx_bytes > 0 and run.up.rx_bytes > 0
        # Every heatmap the robot received crossed the veth (no shared memory, no loopback shortcut).
        assert run.session_down_bytes >= run.heatmap_bytes > 0
    # Every observation the policy acted on carried both raw images across the link.
    assert raw.session_up_bytes >= raw.distinct_action_stamps * len(CAMERAS) * pixels
    assert compressed.up_per_camera_frame < raw.up_per_camera_frame
