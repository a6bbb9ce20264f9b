"""One wording for a number outside its allowed range: ``--k must lie in [1, 4096], got 0``.

Every option, parameter and setting with bounds is checked here, so that the refusal reads the
same whichever command or node gives it, and so that NaN and infinity are refused everywhere:
``nan <= 0`` is false, and a hand-written ``if x <= 0: raise`` lets NaN through.
"""

from __future__ import annotations

import math
import numbers

from pai_ros.errors import UserError


def require(name: str, value: float, *, at_least: float | None = None, above: float | None = None,
            at_most: float | None = None, below: float | None = None, note: str = "",
            error: type[Exception] = UserError) -> None:
    """Raise ``error`` naming ``name`` unless ``value`` is a finite number within the bounds.

    At most one lower bound (``at_least`` inclusive, ``above`` exclusive) and one upper bound
    (``at_most``, ``below``). ``note`` follows the bound in the message (" of seconds",
    " (0: no splitting)"). ``error`` is ``ValueError`` where a wrong value is the caller's bug.
    """
    if at_least is not None and above is not None or at_most is not None and below is not None:
        raise TypeError("require: give at most one lower and one upper bound")
    low = at_least if at_least is not None else above
    high = at_most if at_most is not None else below
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        ok = False
    else:
        # An int is finite however large (math.isfinite(10**400) raises OverflowError).
        ok = ((isinstance(value, numbers.Integral) or math.isfinite(value))
              and (at_least is None or value >= at_least) and (above is None or value > above)
              and (at_most is None or value <= at_most) and (below is None or value < below))
    if ok:
        return
    if low is not None and high is not None:
        opening = "[" if at_least is not None else "("
        closing = "]" if at_most is not None else ")"
        bound = f"lie in {opening}{_text(low)}, {_text(high)}{closing}"
    elif above == 0:
        bound = "a positive number"
    elif low is not None:
        bound = f"be at least {_text(low)}" if at_least is not None else f"be above {_text(low)}"
    elif high is not None:
        bound = f"be at most {_text(high)}" if at_most is not None else f"be below {_text(high)}"
    else:
        bound = "a finite number"
    verb = "be " if bound.startswith("a ") else ""
    # Quoted when text: "30" from a JSON file read as "got 30" looked like a valid number refused.
    shown = f"{value!r} (text)" if isinstance(value, str) else value
    raise error(f"{name} must {verb}{bound}{note}, got {shown}")


def _text(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)
