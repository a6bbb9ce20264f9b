"""bag -> Parquet (+ MP4) conversion time against a bare rosbags read-and-deserialise loop.

Builds one bag (default: 300 ticks at 30 Hz of two 480x640 rgb8 cameras, joint_states,
action, FeatureActivations, and /diagnostics at 1 Hz; a synthetic scene with a moving block, so
H.264 has realistic work), then times in interleaved rounds, same bag, same machine:

* reference: ``AnyReader`` over every message + ``deserialize`` (the floor any converter pays);
* pai, Parquet only: ``bag_to_parquet(videos=False)`` (tables + frame index, no pixels);
* reference 2: the reference plus RGB conversion and ``Mp4Writer`` encoding of every frame
  (the floor of any converter that writes H.264 videos);
* pai, full: ``bag_to_parquet()`` (tables + two MP4s).

Usage: python bench/bench_bag2parquet.py [--ticks 300] [--rounds 3] [--compression none|zstd]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, machine, print_table, summary_ms  # noqa: E402

from pai_ros.bags.to_parquet import bag_to_parquet  # noqa: E402
from pai_ros.bags.typestore import FEATURE_ACTIVATIONS_TYPE, typestore  # noqa: E402
from pai_ros.bags.writer import BagWriter  # noqa: E402

H, W = 480, 640


def scene(t: int, cam: int) -> np.ndarray:
    """A gradient table with a red block that moves: compressible like a real camera, not noise."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0] = (x * 255 // W).astype(np.uint8)
    img[..., 1] = (y * 255 // H).astype(np.uint8)
    img[..., 2] = 90 + 40 * cam
    cx, cy = int(W / 2 + 200 * math.cos(t / 30)), int(H / 2 + 150 * math.sin(t / 45 + cam))
    img[max(cy - 30, 0): cy + 30, max(cx - 30, 0): cx + 30] = (220, 20, 20)
    return img


def build_bag(path: Path, ticks: int, compression: str) -> int:
    store = typestore()
    T = store.types

    def ser(msg, typ: str) -> bytes:
        return bytes(store.serialize_cdr(msg, typ))

    def hdr(t: int):
        ns = 1_700_000_000_000_000_000 + t * 33_333_333
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                        frame_id="")

    rng = np.random.default_rng(0)
    n = 0
    with BagWriter(path, compression=compression) as w:
        for t in range(ticks):
            recv = 1_700_000_000_000_000_000 + t * 33_333_333 + 2_000_000
            for cam, name in enumerate(("front", "wrist")):
                img = T["sensor_msgs/msg/Image"](header=hdr(t), height=H, width=W, encoding="rgb8", is_bigendian=0,
                                                 step=W * 3, data=scene(t, cam).ravel())
                w.write(f"/camera/{name}/image_raw", "sensor_msgs/msg/Image", ser(img, "sensor_msgs/msg/Image"), recv)
            for topic in ("/joint_states", "/action"):
                js = T["sensor_msgs/msg/JointState"](header=hdr(t), name=[f"j{k}" for k in range(6)],
                                                     position=rng.normal(size=6), velocity=rng.normal(size=6),
                                                     effort=np.zeros(0))
                w.write(topic, "sensor_msgs/msg/JointState", ser(js, "sensor_msgs/msg/JointState"), recv + 1)
            idx = np.sort(rng.choice(4096, 64, replace=False)).astype(np.uint32)
            fa = T[FEATURE_ACTIVATIONS_TYPE](header=hdr(t), sae_id="sae-bench", num_features=4096, feature_indices=idx,
                                             activations=rng.random(64, dtype=np.float32),
                                             token_counts=rng.integers(1, 300, 64).astype(np.uint32), num_tokens=302,
                                             mean_l0=31.5, reconstruction_error=0.1, ood_threshold=0.3, is_ood=False,
                                             ood_score=math.nan, ood_score_threshold=math.nan, steered=False,
                                             steering_mode="", steered_features=np.zeros(0, np.uint32),
                                             steering_values=np.zeros(0, np.float32), steering_remaining_s=0.0,
                                             camera_state_score=math.nan, camera_state_threshold=math.nan,
                                             camera_state_cameras=[],
                                             camera_state_camera_scores=np.zeros(0, np.float32))
            w.write("/features", FEATURE_ACTIVATIONS_TYPE, ser(fa, FEATURE_ACTIVATIONS_TYPE), recv + 2)
            n += 5
            if t % 30 == 0:
                KV, DS = T["diagnostic_msgs/msg/KeyValue"], T["diagnostic_msgs/msg/DiagnosticStatus"]
                diag = T["diagnostic_msgs/msg/DiagnosticArray"](header=hdr(t), status=[
                    DS(level=0, name="pai/policy", message="ok", hardware_id="", values=[KV(key="tick", value=str(t))])])
                w.write("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
                        ser(diag, "diagnostic_msgs/msg/DiagnosticArray"), recv + 3)
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=300, help="ticks at 30 Hz (each: 2 frames + 3 small messages)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compression", default="none", choices=("none", "zstd"))
    args = ap.parse_args()

    from rosbags.highlevel import AnyReader

    from pai_ros.imaging.convert import raw_to_rgb
    from pai_ros.media.video import Mp4Writer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bag = root / "bag"
        messages = build_bag(bag, args.ticks, args.compression)
        size_mb = sum(f.stat().st_size for f in bag.glob("*.mcap")) / 1e6
        k = [0]

        def fresh() -> Path:
            k[0] += 1
            out = root / f"out{k[0]}"
            return out

        def reference() -> None:
            with AnyReader([bag]) as reader:
                for conn, _t, raw in reader.messages():
                    reader.deserialize(raw, conn.msgtype)

        def reference_with_video() -> None:
            writers: dict[str, Mp4Writer] = {}
            with AnyReader([bag]) as reader:
                for conn, _t, raw in reader.messages():
                    msg = reader.deserialize(raw, conn.msgtype)
                    if conn.msgtype == "sensor_msgs/msg/Image":
                        if conn.topic not in writers:
                            writers[conn.topic] = Mp4Writer(root / f"ref{k[0]}_{len(writers)}.mp4", 30.0)
                        writers[conn.topic].write(raw_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data))
            for w in writers.values():
                w.close()
            for f in root.glob("ref*.mp4"):
                f.unlink()

        def parquet_only() -> None:
            out = fresh()
            bag_to_parquet(bag, out, progress=False, videos=False)
            shutil.rmtree(out)

        def full() -> None:
            out = fresh()
            bag_to_parquet(bag, out, progress=False)
            shutil.rmtree(out)

        for fn in (reference, parquet_only):  # warm-up (page cache, imports)
            fn()
        times = interleaved({"ref": reference, "pq": parquet_only, "ref_video": reference_with_video, "full": full},
                            args.rounds)
    r, p, rv, f = (summary_ms(times[key]) for key in ("ref", "pq", "ref_video", "full"))
    fmt = lambda s: f"{s[0] / 1000:.2f} s [{s[1] / 1000:.2f}-{s[2] / 1000:.2f}]"  # noqa: E731
    rows = [
        ("Parquet only (videos=False) vs rosbags AnyReader read+deserialise", fmt(p), fmt(r), f"{p[0] / r[0]:.2f}x",
         "<= 1.25x"),
        ("full (tables + 2 H.264 MP4s) vs read+deserialise+RGB+Mp4Writer", fmt(f), fmt(rv), f"{f[0] / rv[0]:.2f}x",
         "<= 1.25x"),
        ("full vs read+deserialise only (shows what H.264 costs)", fmt(f), fmt(r), f"{f[0] / r[0]:.2f}x", "-"),
        ("throughput, Parquet only", f"{messages / (p[0] / 1000):.0f} msg/s", f"{messages / (r[0] / 1000):.0f} msg/s",
         "-", "-"),
    ]
    print_table(f"bag2parquet: {args.ticks} ticks, 2 x {H}x{W} rgb8 cameras + joint_states + action + features "
                f"+ diagnostics ({messages} messages, {size_mb:.0f} MB MCAP, compression {args.compression}), "
                f"{args.rounds} interleaved rounds, median [min-max]; {machine()}", rows)


if __name__ == "__main__":
    main()
