"""Overhead of every-tick interpretability over a plain ACT forward, and wasted forwards per mode.

Default LeRobot ACT configuration (ResNet-18, dim_model 512, 4 encoder layers, chunk 100),
random weights, two 480x640 cameras, on this machine's CPU (or --device cuda). Compared in
interleaved rounds, same inputs:

* reference A: ``policy.predict_action_chunk`` on an already preprocessed batch (bare model);
* reference B: preprocess + ``predict_action_chunk`` + postprocess (what any deployment runs);
* pai: ``PolicyRunner.step`` (validation, preprocess, forward with capture hooks, postprocess)
  + cross-attention shares and grids + both heatmap overlays rendered at 480x640 + the ROS
  messages the node publishes (action, shares, two heatmap Images), built and serialised to CDR;
* pai + SAE: the same with the encoder output captured and encoded by a TopK SAE
  (512 -> 4096, k 32) into a ``FeatureActivations`` message, also serialised.

Serialising is what publishing costs the node's thread; the DDS transport itself is measured
by bench_policy_node.py and bench_recorder.py.

Usage: python bench/bench_attention_overhead.py [--rounds 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import fmt_ms, interleaved, machine, paired_ratio, print_table, summary_ms  # noqa: E402
from setups import default_act_checkpoint, random_observation, random_topk_sae  # noqa: E402

from pai_ros.policy.capture import CaptureConfig  # noqa: E402
from pai_ros.attention.maps import maps_for_tick  # noqa: E402
from pai_ros.attention.render import Normalization, normalize, overlay  # noqa: E402
from pai_ros.policy.loading import load_act_policy  # noqa: E402
from pai_ros.policy.observation import Observation  # noqa: E402
from pai_ros.policy.random_init import save_random_act  # noqa: E402
from pai_ros.policy.runner import PolicyRunner, TickResult  # noqa: E402
from pai_ros.sae.frame import encode_frame  # noqa: E402


def publish_cost() -> tuple[object, object]:
    """Functions that build and serialise the node's messages (None, None without the ROS wheels)."""
    try:
        from rclpy.serialization import serialize_message
        from std_msgs.msg import Header

        from pai_ros.ros.messages import (
            feature_activations,
            joint_state,
            rgb_image,
            to_stamp,
        )
    except ImportError:
        return None, None

    def tick_messages(res: TickResult, overlays: list[np.ndarray], shares: dict[str, float]) -> None:
        stamp = to_stamp(1)
        serialize_message(joint_state([f"a{i}" for i in range(res.action.size)], res.action, stamp))
        serialize_message(joint_state(list(shares), np.array(list(shares.values())), stamp))
        for img in overlays:
            serialize_message(rgb_image(img, Header(stamp=stamp, frame_id="camera")))

    def feature_message(features: object) -> None:
        serialize_message(feature_activations(features, "bench", 4096, to_stamp(1), 0.01))

    return tick_messages, feature_message


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = default_act_checkpoint(Path(tmp) / "act")
        plain, loaded, loaded_sae = (load_act_policy(ckpt, args.device) for _ in range(3))
    params = sum(p.numel() for p in loaded.policy.parameters()) / 1e6
    obs = random_observation()
    cams = list(obs.images)
    runner = PolicyRunner(loaded, "replan")
    runner_sae = PolicyRunner(loaded_sae, "replan", CaptureConfig(encoder_output=True))
    sae = random_topk_sae(512, 4096, 32).to(args.device)
    batch = runner.preprocess(obs)
    tick_messages, feature_message = publish_cost()

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def bare() -> None:
        with torch.inference_mode():
            plain.policy.predict_action_chunk(batch)
        sync()

    def deployed() -> None:
        with torch.inference_mode():
            raw = {f"observation.images.{c}": torch.from_numpy(img).permute(2, 0, 1).float() / 255
                   for c, img in obs.images.items()}
            raw["observation.state"] = torch.from_numpy(obs.state)
            chunk = plain.policy.predict_action_chunk(plain.preprocessor(raw))
            plain.postprocessor(chunk[:, 0])
        sync()

    def interpret(res: TickResult) -> None:
        maps = maps_for_tick(res)
        scaled = normalize(maps.grids, Normalization("frame"))
        overlays = [overlay(obs.images[c], scaled[c]) for c in cams]
        if tick_messages is not None:
            tick_messages(res, overlays, maps.shares)

    def pai_tick() -> None:
        interpret(runner.step(obs))

    def pai_tick_sae() -> None:
        res = runner_sae.step(obs)
        features = encode_frame(sae, res.capture.encoder_output[0], 64)
        if feature_message is not None:
            feature_message(features)
        interpret(res)
        sync()

    fns = {"bare": bare, "deployed": deployed, "pai": pai_tick, "pai_sae": pai_tick_sae}
    for fn in fns.values():  # warm-up
        fn()
    times = interleaved(fns, args.rounds)
    b, d, p, s = (summary_ms(times[k]) for k in fns)
    what = "capture+shares+2 overlays+messages" if tick_messages else "capture+shares+2 overlays (no ROS wheels)"
    # Ratio: the median of per-round ratios (each round runs every variant back to back).
    rows = [
        (f"tick with {what} vs bare predict_action_chunk", fmt_ms(p), fmt_ms(b),
         paired_ratio(times["pai"], times["bare"]), "<= 1.05x"),
        ("same vs preprocess+predict+postprocess", fmt_ms(p), fmt_ms(d), paired_ratio(times["pai"], times["deployed"]),
         "<= 1.05x"),
        ("same + SAE encode (512->4096, k 32) + features message vs bare predict_action_chunk", fmt_ms(s), fmt_ms(b),
         paired_ratio(times["pai_sae"], times["bare"]), "<= 1.10x"),
    ]

    # Wasted forwards per executed action, per mode (tiny model: only the counts matter).
    with tempfile.TemporaryDirectory() as tmp:
        small = {"front": (64, 80)}
        ck_q = save_random_act(Path(tmp) / "q", small, chunk_size=20, n_action_steps=20)
        ck_e = save_random_act(Path(tmp) / "e", small, chunk_size=20, n_action_steps=1, temporal_ensemble_coeff=0.01)
        o = Observation({"front": np.zeros((64, 80, 3), np.uint8)}, np.zeros(3, np.float32))
        for mode, ck in (("ensemble", ck_e), ("queue", ck_q), ("replan", ck_q), ("chunk", ck_q)):
            r = PolicyRunner(load_act_policy(ck, "cpu"), mode)
            for _ in range(60):
                r.step(o)
            fresh = "every tick" if mode != "chunk" else "once per chunk"
            rows.append((f"wasted forwards per executed action, {mode} (maps {fresh})",
                         f"{r.stats.wasted_per_action:.3f}", "-", "-", "0" if mode == "ensemble" else "-"))
    print_table(f"Attention overhead: default ACT ({params:.1f} M params), 2 x 480x640, {args.device}, "
                f"{args.rounds} interleaved rounds, median [min-max]; {machine()}", rows)


if __name__ == "__main__":
    main()
