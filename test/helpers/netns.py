"""Two "hosts" on one kernel: a pair of network namespaces joined by a veth link (tests and bench).

    with two_hosts(domain_id=42) as net:
        robot = Proc(net.robot.command([python, "-m", ...]), net.robot.ros_env(base_env), "replay")
        before = net.robot.counters()        # bytes/packets through the robot end of the link

Each side sees only its own loopback and its end of the veth (10.231.N.1 / 10.231.N.2, /24), so
DDS traffic between them has to cross the link, where the kernel counts it. The namespaces and
the link are removed on exit, also when the body raises. Needs root (CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ros_processes import HELPERS, Probe, Proc  # test/ is on sys.path in tests and benchmarks


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here (no iproute2, not root, no permission)."""


@dataclass(frozen=True)
class LinkCounters:
    tx_bytes: int
    rx_bytes: int
    tx_packets: int
    rx_packets: int

    def __sub__(self, other: "LinkCounters") -> "LinkCounters":
        return LinkCounters(self.tx_bytes - other.tx_bytes, self.rx_bytes - other.rx_bytes,
                            self.tx_packets - other.tx_packets, self.rx_packets - other.rx_packets)


@dataclass(frozen=True)
class Host:
    namespace: str
    interface: str  # this side's end of the veth
    address: str
    peer_address: str

    def command(self, args: list[str]) -> list[str]:
        """`args` run inside this host's namespace (ip netns exec execs in place: the pid is the program's)."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def ros_env(self, base: dict[str, str], domain_id: int, profile: str | None = None) -> dict[str, str]:
        """ROS 2 environment for this host: discovery limited to itself and the other host, over UDP only.

        LOCALHOST range + ROS_STATIC_PEERS: no multicast at all (the namespaces have no multicast
        route, and a real robot network may drop it), unicast discovery of exactly the peer.
        FASTDDS_BUILTIN_TRANSPORTS=UDPv4: Fast DDS could otherwise pick shared memory between
        processes of one kernel and the data would not touch the link. `profile`: a Fast DDS XML
        file that defines the transports itself (e.g. UDPv4 with larger socket buffers) instead.
        """
        env = {k: v for k, v in base.items() if k not in ("ROS_LOCALHOST_ONLY", "FASTDDS_DEFAULT_PROFILES_FILE")}
        env.update({"ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                    "ROS_STATIC_PEERS": self.peer_address, "PYTHONUNBUFFERED": "1"})
        if profile:
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
            env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
        else:
            env["FASTDDS_BUILTIN_TRANSPORTS"] = "UDPv4"
        return env

    def counters(self) -> LinkCounters:
        """Kernel counters of this side's veth end (tx = sent to the other host)."""
        out = _ip("-j", "-s", "-n", self.namespace, "link", "show", "dev", self.interface)
        stats = json.loads(out)[0]["stats64"]
        return LinkCounters(stats["tx"]["bytes"], stats["rx"]["bytes"], stats["tx"]["packets"], stats["rx"]["packets"])


@dataclass(frozen=True)
class TwoHosts:
    robot: Host
    gpu: Host


def _ip(*args: str) -> str:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {res.stderr.strip() or 'exit ' + str(res.returncode)}")
    return res.stdout


def check_available() -> None:
    """Raise NetnsUnavailable with the reason when namespaces cannot be made here."""
    if shutil.which("ip") is None:
        raise NetnsUnavailable("iproute2 ('ip') is not installed")
    if os.geteuid() != 0:
        raise NetnsUnavailable("creating network namespaces needs root")


@contextmanager
def two_hosts(tag: str | None = None, subnet: int | None = None) -> Iterator[TwoHosts]:
    """Create robot and gpu namespaces joined by a veth pair; remove them on exit.

    Names carry the pid (and `tag`) so parallel runs never collide; interface names stay within
    the kernel's 15 characters.
    """
    check_available()
    tag = tag or str(os.getpid())
    subnet = subnet if subnet is not None else 1 + os.getpid() % 250
    robot = Host(f"pai-robot-{tag}", f"pr{tag}"[:15], f"10.231.{subnet}.1", f"10.231.{subnet}.2")
    gpu = Host(f"pai-gpu-{tag}", f"pg{tag}"[:15], f"10.231.{subnet}.2", f"10.231.{subnet}.1")
    created: list[str] = []
    try:
        for host in (robot, gpu):
            _ip("netns", "add", host.namespace)
            created.append(host.namespace)
        _ip("link", "add", robot.interface, "type", "veth", "peer", "name", gpu.interface)
        for host in (robot, gpu):
            # Moving the ends into the namespaces first: deleting a namespace then deletes its end,
            # and a veth end going away takes its peer with it, so nothing is left in the root namespace.
            _ip("link", "set", host.interface, "netns", host.namespace)
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", host.interface)
            _ip("-n", host.namespace, "link", "set", host.interface, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")  # local participants still talk over loopback
        yield TwoHosts(robot, gpu)
    finally:
        # A veth end still in the root namespace (setup failed half-way) is not inside any namespace.
        subprocess.run(["ip", "link", "del", robot.interface], capture_output=True, timeout=30)
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


# ------------------------------------------------------------------ replay (robot) -> policy (gpu) across the link

class NetnsProbe(Probe):
    """ros_processes.Probe (test/helpers/topic_probe.py), run inside a host's namespace."""

    def __init__(self, host: Host, specs: list[str], env: dict[str, str]) -> None:
        Proc.__init__(self, host.command([sys.executable, str(HELPERS / "topic_probe.py"), *specs]), env, "probe")
        self.wait_for_line(lambda line: line == "READY", 60)


@dataclass
class LinkWindow:
    """Traffic through the link while the robot probe received `actions` actions (one per policy tick)."""

    compressed: bool
    cameras: int
    frames: int  # frames the replay published in the window (its joint_states, seen on the robot side)
    actions: int  # actions that came back to the robot
    heatmaps: int  # heatmap images that came back (all cameras)
    up: LinkCounters  # robot -> gpu is the robot end's tx
    session_up_bytes: int  # from before the first process started to after the last one stopped
    session_down_bytes: int
    distinct_action_stamps: int  # observations the policy acted on (each needed every camera's image)
    heatmap_bytes: int  # payload of the heatmaps received, whole session

    @property
    def up_per_tick(self) -> float:
        return self.up.tx_bytes / self.actions

    @property
    def down_per_tick(self) -> float:
        return self.up.rx_bytes / self.actions

    @property
    def up_per_camera_frame(self) -> float:
        return self.up.tx_bytes / (self.frames * self.cameras)


def run_policy_across(net: TwoHosts, base_env: dict[str, str], domain_id: int, *, dataset_root: str,
                      policy_path: str, cameras: list[str], state_names: list[str], compressed: bool,
                      window_actions: int, control_rate_hz: float = 15.0, jpeg_quality: int = 90,
                      watch_heatmaps: bool = True, start_timeout: float = 180.0,
                      max_observation_age_s: float = 0.5) -> LinkWindow:
    """replay_node + probe on the robot, policy_node on the gpu host; count the link over a window.

    The window opens once actions and every camera's heatmap have come back (discovery is over)
    and closes when `window_actions` more actions have arrived; the replay loops meanwhile.
    Without `watch_heatmaps` nothing on the robot subscribes to heatmaps, so DDS does not send them.
    `max_observation_age_s` must exceed the policy's tick time, or no action ever comes back.
    """
    python = sys.executable
    suffix = "/compressed" if compressed else ""
    cam_specs = [f"{c}:camera/{c}/image_raw{suffix}{':compressed' if compressed else ''}" for c in cameras]
    robot_env, gpu_env = net.robot.ros_env(base_env, domain_id), net.gpu.ros_env(base_env, domain_id)

    def params(*ps: str) -> list[str]:
        return [a for p in ps for a in ("-p", p)]

    start = net.robot.counters()
    heat_topics = [f"attention/{c}/heatmap" for c in cameras] if watch_heatmaps else []
    probe = NetnsProbe(net.robot, ["action:JointState", "joint_states:JointState", "recorded_action:JointState",
                                   *[f"{t}:Image" for t in heat_topics]], robot_env)
    procs: list[Proc] = [probe]
    try:
        cam_list = "[" + ", ".join(f"'{s}'" for s in cam_specs) + "]"
        names = "[" + ", ".join(f"'{n}'" for n in state_names) + "]"
        procs.append(Proc(net.gpu.command([python, "-m", "pai_ros.ros.policy_node", "--ros-args", *params(
            f"policy_path:={policy_path}", f"cameras:={cam_list}", f"state_joint_names:={names}",
            f"control_rate_hz:={control_rate_hz}", f"max_observation_age_s:={max_observation_age_s}", "device:=cpu")]),
            gpu_env, "policy_node"))
        # wait_for_subscribers: frames flow only once the policy (across the link) and the probe have matched.
        procs.append(Proc(net.robot.command([python, "-m", "pai_ros.ros.replay_node", "--ros-args", *params(
            f"dataset_root:={dataset_root}", "loop:=true", f"compressed:={str(compressed).lower()}",
            f"jpeg_quality:={jpeg_quality}", "wait_for_subscribers:=1")]), robot_env, "replay_node"))

        def count(topic: str) -> int:
            return len(probe.messages(topic))

        def seen_all() -> bool:
            return count("action") > 0 and all(count(t) > 0 for t in heat_topics)

        try:
            probe.wait_for_line(lambda _: seen_all(), start_timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n" + "\n".join(f"--- {p.name}:\n" + "\n".join(p.lines[-15:])
                                                         for p in procs[1:])) from None
        before, n0 = net.robot.counters(), {t: count(t) for t in ("action", "joint_states")}
        h0 = sum(count(t) for t in heat_topics)
        probe.wait_for_line(lambda _: count("action") >= n0["action"] + window_actions, 30 + 2 * window_actions)
        after, n1 = net.robot.counters(), {t: count(t) for t in ("action", "joint_states")}
        h1 = sum(count(t) for t in heat_topics)
    finally:
        for p in reversed(procs):
            p.stop()
    end = net.robot.counters()
    heatmaps = [m for t in heat_topics for m in probe.messages(t)]
    return LinkWindow(
        compressed=compressed, cameras=len(cameras), frames=n1["joint_states"] - n0["joint_states"],
        actions=n1["action"] - n0["action"], heatmaps=h1 - h0, up=after - before,
        session_up_bytes=(end - start).tx_bytes, session_down_bytes=(end - start).rx_bytes,
        distinct_action_stamps=len({m["stamp_ns"] for m in probe.messages("action")}),
        heatmap_bytes=sum(m["size"] for m in heatmaps))
