"""The runner's explainers by method name: which class computes a gradient live method, and its memory.

One place for the choice, so the live tick, ``pai attention`` and the benchmarks build the same
explainer for the same name.
"""

from __future__ import annotations

from typing import Any

from pai_ros.attention.input_gradient import NAME as INPUT_GRADIENT
from pai_ros.attention.input_gradient import InputGradientExplainer
from pai_ros.attention.input_gradient import (
    estimated_memory_bytes as input_gradient_bytes,
)
from pai_ros.attention.relevance import RelevanceExplainer, RelevanceTarget
from pai_ros.attention.relevance import estimated_memory_bytes as relevance_bytes


def make_explainer(policy: Any, method: str, target: RelevanceTarget = RelevanceTarget()) -> Any:
    """A detached explainer for ``method`` (relevance, relevance_cross or input_gradient), explaining ``target``."""
    if method == INPUT_GRADIENT:
        return InputGradientExplainer(policy, target)
    return RelevanceExplainer(policy, method, target)


def estimated_memory_bytes(policy: Any, method: str, image_sizes: list[tuple[int, int]], layout_tokens: int) -> int:
    """Extra memory one tick of ``method`` needs (generous), for the check before switching to it."""
    if method == INPUT_GRADIENT:
        return input_gradient_bytes(policy, image_sizes, layout_tokens)
    return relevance_bytes(policy, layout_tokens, method)


class explaining:
    """Context manager: ``runner`` computes ``method`` (any gradient live method) during its forward passes.

    Checks first that the graph can give gradients (:class:`NoGradientError` otherwise), and
    puts back whatever explainer the runner had.
    """

    def __init__(self, runner: Any, method: str, target: RelevanceTarget = RelevanceTarget()) -> None:
        self.runner = runner
        self.explainer = make_explainer(runner.policy, method, target)
        self._previous = None

    def __enter__(self) -> Any:
        self.explainer.check_gradients()
        self._previous = self.runner.explainer
        self.runner.explainer = self.explainer.attach()
        return self.explainer

    def __exit__(self, *exc: object) -> None:
        self.runner.explainer = self._previous
        self.explainer.detach()
