"""JSON files that are never half-written, and one-line errors for ones that cannot be read."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pai_ros.errors import UserError
from pai_ros.staging import staged_file


def json_text(data: Any, indent: int | None = 2) -> str:
    """``data`` as strict JSON: a NaN or infinite float is written as ``null``.

    Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which is not JSON: a browser's
    ``JSON.parse``, ``jq`` and most other readers refuse the whole file for one such value
    (e.g. a rank correlation of a single feature).
    """
    return json.dumps(_finite_or_null(data), indent=indent, allow_nan=False)


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same directory, then rename over ``path`` (strict JSON)."""
    text = json_text(data)  # data that cannot be written fails before any file is touched
    with staged_file(path) as tmp:
        tmp.write_text(text)


def read_json(path: Path, what: str, *, want_object: bool = False) -> Any:
    """Parsed JSON, or a :class:`UserError` naming ``what`` was missing or damaged.

    ``want_object``: anything but a JSON object (a list, a number) is refused as ``what`` too.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    if want_object and not isinstance(data, dict):
        raise UserError(f"{path} is not a {what} (a JSON object)")
    return data
