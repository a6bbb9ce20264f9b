"""JSON files that are never half-written, and one-line errors for ones that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pai_ros.errors import UserError
from pai_ros.staging import staged_file


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file in the same directory, then rename over ``path``."""
    text = json.dumps(data, indent=2)  # data that cannot be written fails before any file is touched
    with staged_file(path) as tmp:
        tmp.write_text(text)


def read_json(path: Path, what: str) -> Any:
    """Parsed JSON, or a :class:`UserError` naming ``what`` was missing or damaged."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
