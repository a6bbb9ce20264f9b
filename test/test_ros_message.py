"""FeatureActivations crosses real DDS between two separate processes (rclpy, Fast DDS)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
HELPER = Path(__file__).parent / "helpers" / "feature_msg_peer.py"


def test_feature_activations_round_trip_between_processes(ros_env: dict[str, str]) -> None:
    sub = subprocess.Popen([sys.executable, str(HELPER), "subscribe", "features"], env=ros_env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sub.stdout.readline().strip() == "READY"
        pub = subprocess.run([sys.executable, str(HELPER), "publish", "features"], env=ros_env,
                             capture_output=True, text=True, timeout=90)
        out, err = sub.communicate(timeout=90)
    finally:
        sub.kill()
    assert pub.returncode == 0, pub.stderr
    assert sub.returncode == 0, err
    got = json.loads(out.strip().splitlines()[-1])
    assert got == {
        "stamp": [1_700_000_123, 456_789], "frame_id": "policy", "sae_id": "sae-3f2a9c", "num_features": 4096,
        "feature_indices": [4095, 17, 0], "activations": [3.5, 1.25, 0.125], "token_counts": [12, 3, 1],
        "num_tokens": 42, "mean_l0": 7.5, "reconstruction_error": 0.0625, "ood_threshold": None, "is_ood": True,
    }


def test_message_definition_has_the_contract_fields() -> None:
    from pai_ros.msg import FeatureActivations

    fields = FeatureActivations.get_fields_and_field_types()
    for name, typ in {"header": "std_msgs/Header", "sae_id": "string", "num_features": "uint32",
                      "feature_indices": "sequence<uint32>", "activations": "sequence<float>",
                      "reconstruction_error": "float"}.items():
        assert fields[name] == typ
    # Every field of the .msg file is documented by a comment right above it.
    lines = (Path(__file__).resolve().parents[1] / "msg" / "FeatureActivations.msg").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"field without a comment: {line}"
