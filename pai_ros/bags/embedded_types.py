"""The message definitions a bag carries, read and checked against ours.

MCAP bags embed the definition of every type they hold, so a bag recorded with an older
``FeatureActivations`` (before fields were appended) still decodes with the definition it was
written with. :func:`bag_typestore` builds a store of just the types a reader needs, the bag's
definitions first and ours where it has none; :func:`incompatibility` says why a topic cannot be
read as ours (a field it needs that is missing or has another type), so that topic is reported
and skipped instead of failing the whole conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pai_ros.bags.reading import FEATURES
from pai_ros.bags.typestore import referenced_types

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.typesys.store import Typestore


def bag_typestore(base: Typestore, connections: list[Connection], wanted: Sequence[str]) -> Typestore:
    """A store of just the ``wanted`` types and their dependencies, the bag's own definitions first.

    Small on purpose: compiling rosbags' message classes costs about 1 ms per type, and a bag
    only needs the handful we convert. An embedded definition that does not parse, or a set
    that clashes, falls back to the base definitions; whether the result still fits the
    converter is checked per topic by :func:`incompatibility`.
    """
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    embedded: dict = {}
    roots: list[str] = []
    for conn in connections:
        if conn.msgtype not in wanted or conn.msgtype in roots:
            continue
        roots.append(conn.msgtype)
        fmt, data = conn.msgdef.format, conn.msgdef.data
        if fmt == MessageDefinitionFormat.NONE or not data:
            continue
        try:
            if fmt == MessageDefinitionFormat.MSG:
                types = get_types_from_msg(data, conn.msgtype)
            else:
                types = {}
                sep = "=" * 80 + "\n"
                for part in (data.split(sep)[1:] if data.startswith(sep + "IDL: ") else [data]):
                    types.update(get_types_from_idl(part.split("\n", 1)[1] if part.startswith("IDL: ") else part))
        except Exception:  # unparsable: keep the base definition
            continue
        embedded.update(types)
    for lookup in ({**base.fielddefs, **embedded}, base.fielddefs):
        store = get_typestore(Stores.EMPTY)
        try:
            store.register({k: v for k, v in _closure(lookup, roots).items() if k not in store.fielddefs})
            return store
        except Exception:  # clashing embedded definitions: fall back to the base definitions
            continue
    raise AssertionError("the base type store does not register")  # pragma: no cover


def _closure(lookup: dict, roots: list[str]) -> dict:
    """``roots`` and every type they use, as found in ``lookup`` (missing ones are left out)."""
    out: dict = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in out or name not in lookup:
            continue
        out[name] = lookup[name]
        for _fname, fielddef in lookup[name][1]:
            pending.extend(referenced_types(fielddef))
    return out


# Fields appended to our messages after their first release: bags recorded earlier lack them.
APPENDED_FIELDS = {FEATURES: frozenset(
    ("ood_score", "ood_score_threshold", "steered", "steering_mode", "steered_features", "steering_values",
     "steering_remaining_s", "camera_state_score", "camera_state_threshold", "camera_state_cameras",
     "camera_state_camera_scores"))}


def incompatibility(store: Typestore, base: Typestore, msgtype: str) -> str | None:
    """Why ``msgtype`` as defined in the bag cannot be converted (None: it can).

    Every field the converter reads must exist with the same type as in our definition; extra
    fields are fine (messages are extended, never renamed), missing or retyped ones are not.
    """
    pending, done = [msgtype], set()
    while pending:
        name = pending.pop()
        if name in done:
            continue
        done.add(name)
        if name not in store.fielddefs:
            return f"no definition of {name}"
        have = dict(store.fielddefs[name][1])
        for field_name, fielddef in base.fielddefs[name][1]:
            if field_name not in have and field_name in APPENDED_FIELDS.get(name, ()):
                continue  # recorded before the field was appended: the converter fills its default
            if field_name not in have:
                return f"the bag's {name} has no field {field_name}"
            if have[field_name] != fielddef:
                return f"the bag's {name}.{field_name} has another type"
            pending.extend(referenced_types(fielddef))
    return None
