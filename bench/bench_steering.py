"""Feature steering: what the hook costs on the tick when inactive and when active.

Default LeRobot ACT (random weights, two 480x640 cameras, CPU), ``PolicyRunner.step`` in
interleaved rounds, same inputs:

* reference: the runner as the node uses it without ``allow_steering`` (no hook);
* inactive: the steering hook registered on the encoder and disarmed (``allow_steering:=true``,
  nothing requested): the target is no measurable cost. A whole tick varies by several percent
  between rounds on a shared CPU, so the hook's own cost is also timed alone (identity module,
  hook vs no hook, best of three) and compared with the tick;
* active: one feature of a TopK SAE (512 -> 4096, k 32) ablated on every token of every tick.

The closed-loop experiment (ablating the features with the largest effect vs as many random
ones, success rate on the demo robot) is in bench_closed_loop_steering.py.

Usage: python bench/bench_steering.py [--rounds 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import fmt_ms, interleaved, machine, paired_ratio, print_table, summary_ms  # noqa: E402
from setups import default_act_checkpoint, random_observation, random_topk_sae  # noqa: E402

from pai_ros.policy.capture import CaptureConfig  # noqa: E402
from pai_ros.policy.loading import load_act_policy  # noqa: E402
from pai_ros.policy.runner import PolicyRunner  # noqa: E402
from pai_ros.sae.steering import Steering, SteeringHook  # noqa: E402


def disarmed_hook_cost_us(calls: int = 200_000) -> float:
    """What a disarmed hook adds to one forward of the module it sits on (the tick has one such call).

    Timed on an identity module, where the hook's dispatch and its early return are all there is:
    a whole tick is too noisy on a shared CPU to resolve microseconds.
    """
    import time

    import torch

    x = torch.zeros(4)
    bare, hooked = torch.nn.Identity(), torch.nn.Identity()
    SteeringHook(hooked)
    best = {}
    for name, module in (("bare", bare), ("hooked", hooked)) * 3:
        t = time.perf_counter()
        for _ in range(calls):
            module(x)
        best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t) / calls)
    return max(0.0, best["hooked"] - best["bare"]) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = default_act_checkpoint(Path(tmp) / "act")
        obs = random_observation()
        capture = CaptureConfig(encoder_self_attention=True, encoder_output=True)
        plain = PolicyRunner(load_act_policy(ckpt, args.device), "replan", capture)
        hooked = PolicyRunner(load_act_policy(ckpt, args.device), "replan", capture)
        hook = SteeringHook(hooked.policy.model.encoder)
        sae = random_topk_sae(512, 4096, 32).to(plain.device)
        ablate = Steering.build([7], "ablate", [], num_features=4096, max_value=1.0)

        def active() -> None:
            hook.arm(sae, ablate)
            try:
                hooked.step(obs)
            finally:
                hook.disarm()

        fns = {"plain": lambda: plain.step(obs), "inactive": lambda: hooked.step(obs), "active": active}
        for fn in fns.values():  # warm-up
            fn()
        times = interleaved(fns, args.rounds)
    ref = summary_ms(times["plain"])
    per_call_us = disarmed_hook_cost_us()
    print(f"machine: {machine()}, {args.rounds} interleaved rounds")
    print_table("Feature steering: tick cost (default ACT, 2x480x640, runner step)", [
        ("tick with the steering hook, inactive, vs without it (whole ticks: the spread is the machine's)",
         fmt_ms(summary_ms(times["inactive"])), fmt_ms(ref), paired_ratio(times["inactive"], times["plain"]), "-"),
        ("inactive hook timed alone (hook dispatch + disarmed call, once per tick) over the tick",
         f"{per_call_us:.1f} us", fmt_ms(ref), f"{1 + per_call_us / (ref[0] * 1000):.6f}x", "<= 1.01x"),
        ("tick with one feature ablated (SAE 512->4096, k 32) vs without", fmt_ms(summary_ms(times["active"])),
         fmt_ms(ref), paired_ratio(times["active"], times["plain"]), "-"),
    ])


if __name__ == "__main__":
    main()
