"""The feature tables: ``features.parquet`` (frame level) and ``feature_tokens.parquet`` (token level).

``features.parquet`` is the same table whether it comes from a bag (``pai bag2parquet``, one row
per ``FeatureActivations`` message) or from a dataset (``pai features record``, one row per
frame), so one analysis reads both. ``feature_tokens.parquet`` is written by ``pai features
record`` only: per frame, every non-zero (token, feature, activation) of the SAE codes, which is
what spatial heatmaps of a feature are drawn from.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pai_ros.errors import UserError

FEATURES_FILE = "features.parquet"
TOKENS_FILE = "feature_tokens.parquet"

# The columns every features table has (all that pai_ros 0.1 wrote): readers require only these,
# so tables from older recordings stay readable.
FEATURES_REQUIRED = pa.schema([
    ("stamp_ns", pa.int64()), ("recv_ns", pa.int64()), ("topic", pa.string()),
    ("sae_id", pa.string()), ("num_features", pa.uint32()), ("feature_indices", pa.list_(pa.uint32())),
    ("activations", pa.list_(pa.float32())), ("token_counts", pa.list_(pa.uint32())), ("num_tokens", pa.uint32()),
    ("mean_l0", pa.float32()), ("reconstruction_error", pa.float32()), ("ood_threshold", pa.float32()),
    ("is_ood", pa.bool_()),
])
# Appended with the message's appended fields (NaN / false / empty where not computed).
FEATURES_APPENDED = [
    ("ood_score", pa.float32()), ("ood_score_threshold", pa.float32()),
    ("steered", pa.bool_()), ("steering_mode", pa.string()),
    ("steered_features", pa.list_(pa.uint32())), ("steering_values", pa.list_(pa.float32())),
    ("camera_state_score", pa.float32()), ("camera_state_threshold", pa.float32()),
    ("camera_state_cameras", pa.list_(pa.string())), ("camera_state_camera_scores", pa.list_(pa.float32())),
]
#: What the writers (``pai bag2parquet``, ``pai features record``) write.
FEATURES_SCHEMA = pa.schema([*FEATURES_REQUIRED, *FEATURES_APPENDED])


def unsteered_defaults() -> dict:
    """Appended columns of a row without an OOD score or steering."""
    nan = float("nan")
    return {"ood_score": nan, "ood_score_threshold": nan, "steered": False, "steering_mode": "",
            "steered_features": [], "steering_values": [], "camera_state_score": nan, "camera_state_threshold": nan,
            "camera_state_cameras": [], "camera_state_camera_scores": []}

TOKENS_SCHEMA = pa.schema([
    ("frame_index", pa.int32()), ("stamp_ns", pa.int64()),
    ("token_index", pa.list_(pa.uint16())), ("feature_index", pa.list_(pa.uint32())),
    ("activation", pa.list_(pa.float32())),
])


def open_checked_table(path: Path, expected: pa.Schema, what: str) -> pq.ParquetFile:
    """Open ``path`` and check it has ``expected``'s columns and types (one line if not)."""
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (pa.ArrowInvalid, OSError) as exc:
        detail = " ".join(str(exc).split())[:160]  # Arrow's messages can span lines
        raise UserError(f"{path} is not a readable Parquet file ({detail})") from None
    schema = pf.schema_arrow
    problems = []
    for field in expected:
        if field.name not in schema.names:
            problems.append(f"no column '{field.name}'")
        elif not schema.field(field.name).type.equals(field.type):
            problems.append(f"column '{field.name}' is {schema.field(field.name).type}, expected {field.type}")
    if problems:
        raise UserError(f"{path} is not a pai_ros {what} ({'; '.join(problems[:3])})")
    return pf


def read_checked(pf: pq.ParquetFile, path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a file opened by :func:`open_checked_table`; damage found while reading is one line too.

    A Parquet footer can be intact while its pages are not (a file cut or overwritten in the
    middle): that only shows when the data is read.
    """
    try:
        return pf.read(columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise UserError(f"{path} is damaged: its data cannot be read ({detail})") from None


def check_no_nulls(table: pa.Table, path: Path) -> None:
    """Refuse null values (also inside list columns): the pai_ros writers never produce them."""
    for name in table.column_names:
        col = table.column(name)
        inner = col.combine_chunks().values.null_count if pa.types.is_list(col.type) else 0
        if col.null_count or inner:
            raise UserError(f"{path} has missing (null) values in column '{name}'; it was not written by pai_ros")
