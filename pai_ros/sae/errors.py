"""What can go wrong in SAE work, as exceptions: each a :class:`~pai_ros.errors.UserError` (one
line, no traceback), typed so that a caller can tell a damaged file from a disk budget, a world of
ranks that disagree or data too small to fit a score on.

Argument checks (a bad ``--k``, an unknown ``--kinds``) stay plain ``UserError``: the command line
reports them all the same way.
"""

from __future__ import annotations

from pai_ros.errors import UserError


class ActivationFileError(UserError):
    """Activations that cannot be used: a file or collection that is missing, damaged or not what
    its manifest says, shards of mixed widths or dtypes, NaN or inf rows."""


class DiskBudgetError(UserError):
    """A collection that would not fit ``--max-disk`` or the free disk: refused before any work."""


class RankError(UserError):
    """``torchrun`` ranks that were started with different arguments, a rank that stopped, a GPU a
    rank cannot have, or a one-process command started under ``torchrun``."""


class SaeFileError(UserError):
    """An SAE directory or its calibration files (``ood.json`` and the tensors it names) that cannot
    be loaded: missing, damaged, or made for another SAE."""


class SaeMismatch(UserError):
    """An SAE used with a policy whose tokens it was not trained on (another width or policy)."""


class CannotFit(UserError):
    """A score that cannot be fitted from the data given (too few frames, no robot state).

    ``pai sae calibrate`` records why in ``ood.json`` and goes on without that score; any other
    error stops it.
    """
