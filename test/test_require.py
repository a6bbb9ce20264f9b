"""The one range check: its wording, and that NaN, infinity and non-numbers never pass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pai_ros.errors import UserError
from pai_ros.require import require


@pytest.mark.parametrize(("bounds", "value", "message"), [
    ({"at_least": 1}, 0, "--k must be at least 1, got 0"),
    ({"at_least": 0, "note": " (0: no splitting)"}, -1, "--k must be at least 0 (0: no splitting), got -1"),
    ({"above": 0}, 0.0, "--k must be a positive number, got 0.0"),
    ({"above": 0, "note": " of seconds"}, -2.5, "--k must be a positive number of seconds, got -2.5"),
    ({"above": 0.5}, 0.5, "--k must be above 0.5, got 0.5"),
    ({"at_most": 3}, 4, "--k must be at most 3, got 4"),
    ({"below": 3}, 3, "--k must be below 3, got 3"),
    ({"at_least": 1, "at_most": 1000}, 0, "--k must lie in [1, 1000], got 0"),
    ({"above": 0, "at_most": 1}, 1.5, "--k must lie in (0, 1], got 1.5"),
    ({"above": 0, "below": 1}, 1.0, "--k must lie in (0, 1), got 1.0"),
    ({"at_least": 0.1, "at_most": 1000.0}, 0.05, "--k must lie in [0.1, 1000], got 0.05"),
    ({}, math.inf, "--k must be a finite number, got inf"),
])
def test_a_value_outside_its_bounds_is_named_with_them(bounds, value, message) -> None:
    with pytest.raises(UserError) as info:
        require("--k", value, **bounds)
    assert str(info.value) == message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_nan_and_infinity_fail_every_bound(value) -> None:
    # A hand-written `if x <= 0: raise` lets NaN through; require must not.
    for bounds in ({"above": 0}, {"at_least": 0}, {"at_most": 1e9}, {"at_least": -1e9, "at_most": 1e9}):
        with pytest.raises(UserError):
            require("x", value, **bounds)


@pytest.mark.parametrize("value", [None, "3", True, [1]])
def test_what_is_not_a_number_fails(value) -> None:
    with pytest.raises(UserError, match="must be at least 1"):
        require("x", value, at_least=1)


def test_a_number_written_as_text_is_shown_as_text() -> None:
    """'got 3' for the string "3" read as a valid number refused for no reason."""
    with pytest.raises(UserError, match=r"^x must be at least 1, got '3' \(text\)$"):
        require("x", "3", at_least=1)


def test_a_huge_integer_is_compared_not_a_traceback() -> None:
    with pytest.raises(UserError, match="--episodes must lie in"):
        require("--episodes", 10**400, at_least=1, at_most=1000)
    require("--episodes", 10**400, at_least=1)


def test_values_on_and_inside_the_bounds_pass() -> None:
    require("x", 1, at_least=1, at_most=1)
    require("x", 0.5, above=0, below=1)
    require("x", np.int64(7), at_least=1)  # numpy scalars count as numbers
    require("x", np.float32(0.25), above=0, at_most=1)


def test_the_error_type_is_the_callers_choice() -> None:
    with pytest.raises(ValueError, match="alpha must lie in"):
        require("alpha", 2.0, at_least=0, at_most=1, error=ValueError)


def test_two_bounds_on_one_side_are_a_programming_error() -> None:
    with pytest.raises(TypeError):
        require("x", 1, at_least=0, above=0)
