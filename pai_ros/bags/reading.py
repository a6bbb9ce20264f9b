"""Reading rosbag2 bags, shared by the converters: what to open, opening, and messages in order.

A bag that cannot be read is one line (:class:`CorruptBag`, a :class:`UserError`) that says why
and what to do: an unfinished recording (``pai bag recover``), storage files a partial copy lacks,
or truncated data, never rosbags' traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pai_ros.bags.errors import CorruptBag
from pai_ros.bags.split_order import in_split_order
from pai_ros.errors import UserError

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.typesys.store import Typestore

# Message types the converters read.
FEATURES = "pai_ros/msg/FeatureActivations"
JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"


def find_sources(bag: Path) -> list[Path]:
    """What rosbags should open: the bag directory, or its storage files when it has no metadata."""
    if not bag.exists():
        raise UserError(f"bag not found: {bag}")
    if bag.is_dir():
        if (bag / "metadata.yaml").is_file():
            return [bag]  # files it lists but lacks are named when opening fails (open_reader)
        from pai_ros.bags.recover import unfinished_files

        if unfinished_files(bag):  # a recorder stopped without closing the bag (killed, disk full)
            raise UserError(f"{bag} is an unfinished recording (no metadata.yaml); run `pai bag recover {bag}` "
                            "first and convert the recovered bag")
        files = in_split_order(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3") and p.is_file())
        if not files:
            raise UserError(f"{bag} is not a rosbag2 bag (no metadata.yaml and no .mcap or .db3 file)")
        return files
    if bag.name == "metadata.yaml":
        return [bag.parent]
    if bag.suffix in (".mcap", ".db3"):
        return [bag]
    raise UserError(f"{bag} is not a rosbag2 bag (expected a bag directory or a .mcap/.db3 file)")


def open_reader(source: Path, bag: Path) -> Any:
    """An open rosbags Reader, or one line: the storage files a partly copied bag lacks, or why it is corrupt.

    The missing-file check parses metadata.yaml a second time, so it runs only when opening
    failed (rosbags refuses a bag with missing files, in a message that does not say what to do).
    """
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(source)
        reader.open()
        return reader
    except Exception as exc:
        damaged = _metadata_problem(source) if (source / "metadata.yaml").is_file() else None
        if damaged:
            files = sorted(p.name for p in source.iterdir() if p.suffix in (".mcap", ".db3") and p.is_file())
            if len(files) == 1:
                instead = f"give its storage file instead ({source / files[0]})"
            elif all(f.endswith(".mcap") for f in files):  # recover reads several into one bag, without metadata
                instead = f"move it aside and run `pai bag recover {bag}`, which reads its {len(files)} storage files"
            elif files:
                instead = f"give one storage file at a time ({', '.join(str(source / f) for f in files)})"
            else:
                instead = "and it holds no storage file"
            raise UserError(f"bag {bag}: its metadata.yaml {damaged}; {instead}") from None
        missing = _missing_storage_files(source) if (source / "metadata.yaml").is_file() else []
        if missing:
            raise UserError(f"bag {bag} is incomplete: metadata.yaml lists {', '.join(missing)}, which "
                            f"{'is' if len(missing) == 1 else 'are'} not there (copy the whole bag directory)"
                            ) from None
        raise corrupt_bag(bag, exc) from None


def _metadata_problem(bag: Path) -> str | None:
    """What is wrong with ``metadata.yaml`` itself (empty, not YAML, not a rosbag2 one), or None: rosbags'
    own message for those is Python's ("'NoneType' object is not subscriptable")."""
    from ruamel.yaml import YAML

    try:
        info = YAML(typ="safe").load((bag / "metadata.yaml").read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - any parse error: not YAML
        return "is not valid YAML"
    if info is None:
        return "is empty"
    if not isinstance(info, dict) or "rosbag2_bagfile_information" not in info:
        return "is not a rosbag2 metadata file (no rosbag2_bagfile_information)"
    return None


def _missing_storage_files(bag: Path) -> list[str]:
    """Storage files that ``metadata.yaml`` lists but the directory lacks (a partly copied bag).

    Anything unreadable in the metadata is left to rosbags, which reports it as corrupt.
    """
    from ruamel.yaml import YAML

    try:
        info = YAML(typ="safe").load((bag / "metadata.yaml").read_text(encoding="utf-8"))
        names = [str(name) for name in info["rosbag2_bagfile_information"]["relative_file_paths"]]
    except Exception:  # noqa: BLE001 - any malformed metadata: rosbags gives the precise reason
        return []
    return [name for name in names if not (bag / name).is_file()]


def corrupt_bag(bag: Path, exc: BaseException) -> CorruptBag:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if len(detail) > 160:
        detail = detail[:157] + "..."
    mcaps = [bag] if bag.suffix == ".mcap" else sorted(bag.glob("*.mcap")) if bag.is_dir() else []
    if mcaps and not any(_starts_with_magic(p) for p in mcaps):  # nothing for `pai bag recover` to salvage
        names = [p.name for p in mcaps]
        return CorruptBag(f"cannot read bag {bag}: {', '.join(names)} {'is' if len(names) == 1 else 'are'} "
                          "not MCAP (empty, or no MCAP header)")
    sqlite = bag.suffix == ".db3" or (bag.is_dir() and any(bag.glob("*.db3")))  # recover reads MCAP only
    hint = "" if sqlite else f"; `pai bag recover {bag}` salvages what is readable"
    return CorruptBag(f"cannot read bag {bag}: truncated or corrupt ({detail}){hint}")


def _starts_with_magic(path: Path) -> bool:
    from pai_ros.bags.mcap_scan import MAGIC  # every MCAP file starts with it, even one cut short after 8 bytes

    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return True  # unreadable for another reason: the caller's message stands


def read_messages(reader: Any, wanted: list[Connection], store: Typestore,
              bag: Path) -> Iterator[tuple[Connection, int, Any]]:
    """Deserialised messages; any failure inside rosbags is reported as a corrupt bag."""
    from pai_ros.bags.typestore import deserialize

    it = reader.messages(connections=wanted)
    while True:
        try:
            conn, recv_ns, raw = next(it)
        except StopIteration:
            return
        except Exception as exc:
            raise corrupt_bag(bag, exc) from None
        try:
            msg = deserialize(store, raw, conn.msgtype)
        except Exception as exc:
            raise corrupt_bag(bag, exc) from None
        yield conn, recv_ns, msg
