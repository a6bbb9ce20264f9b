"""Human names and descriptions of features, kept in ``names.json`` next to the results.

Saved atomically (temporary file + rename) so a crash never leaves half a file, and validated on
load so a hand-edited file with a mistake gives one clear line.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pai_ros.errors import UserError
from pai_ros.jsonfile import read_json, write_json_atomic

MAX_NAME = 200
MAX_DESCRIPTION = 5000


def load_names(path: Path) -> dict[int, dict[str, Any]]:
    if not path.is_file():
        return {}
    data = read_json(path, "feature names")
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object {{feature: {{name, description}}}}")
    out: dict[int, dict[str, Any]] = {}
    for key, entry in data.items():
        try:
            feature = int(key)
        except ValueError:
            raise UserError(f"{path}: '{key}' is not a feature index") from None
        if not isinstance(entry, dict):
            raise UserError(f"{path}: feature {key} must map to {{name, description}}")
        # Keys this version does not know (a newer version's, a hand-added note) stay, so the next save
        # writes them back; the known ones are text, a null one empty (str(None) saved back as "None").
        out[feature] = {**entry, **{key: _text(entry.get(key)) for key in ("name", "description", "updated")}}
    return out


def _text(value: Any) -> str:
    """A names.json field as text: a missing or null one is empty."""
    return "" if value is None else str(value)


def shown_version(entry: dict[str, Any] | None) -> str:
    """What a form showed of a feature's entry, to tell at save time whether it changed since."""
    entry = entry or {}
    return json.dumps([entry.get("name", ""), entry.get("description", ""), entry.get("updated", "")])


def save_name(path: Path, feature: int, name: str, description: str, *,
              shown: str | None = None) -> dict[int, dict[str, Any]]:
    """Set (or, with both empty, remove) one feature's name; returns all names.

    ``shown``: :func:`shown_version` of the entry the form was filled from. When the entry changed
    since (another tab, another browser server on the same results), the save is refused with
    :class:`UserError` instead of overwriting that name unseen.
    """
    name, description = name.strip(), description.strip()
    if len(name) > MAX_NAME or len(description) > MAX_DESCRIPTION:
        raise UserError(f"name (max {MAX_NAME}) or description (max {MAX_DESCRIPTION} characters) is too long")
    feature = int(feature)
    with _names_locked(path):  # read, change, replace: two servers' saves must not interleave
        names = load_names(path)
        now = names.get(feature)
        if shown is not None and shown_version(now) != shown:
            said = f"now “{now['name']}”, saved {now['updated']}" if now and now.get("name") else (
                f"saved {now['updated']}" if now else "its name removed")
            raise UserError(f"feature #{feature} was changed elsewhere since this page showed it ({said}); pick the "
                            "feature again to see it, then save")
        if name or description:
            names[feature] = {**(now or {}), "name": name, "description": description,
                              "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        else:
            names.pop(feature, None)
        write_json_atomic(path, {str(k): v for k, v in sorted(names.items())})
    return names


@contextlib.contextmanager
def _names_locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the folder of ``names.json`` (no lock file left beside the results)."""
    fd = os.open(Path(path).parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
