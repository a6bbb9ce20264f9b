"""Outputs that appear only when complete: build in a staging directory, then swap it in.

Every writer of a directory output (attention episodes, feature recordings and analyses, SAE
directories, Parquet conversions, datasets from bags, demo assets) uses :func:`staged_directory`
(``pai bag recover`` builds in the same :func:`staging_path` and renames its one file in):
the work happens in ``.<name>.partial-<pid>`` next to the final path, and only a finished
directory replaces it. Replacing renames the old output aside first and deletes it last, so at
every moment either the old or the new output is complete at the final path (never neither,
as with delete-then-rename), and a crash leaves at worst a stale ``.partial`` or ``.old``
directory, which the next run writing the same output removes (when the process that left it
is gone: :func:`remove_abandoned_staging`). A command that refused to replace the user's files
before its work (:func:`check_replaceable`) also keeps those added while it ran (``checked``).

Single files (JSON, safetensors, PNG) use :func:`staged_file`: written to a hidden
``.<name>.tmp-<pid>`` sibling and renamed over the final path, so a reader sees the old file
or the new one, never half of one. Before any work, :func:`check_apart` keeps an output out of
the inputs it is made from and :func:`make_output_dir` creates an output directory with a
one-line error (:func:`output_directory`: and removes it again, while empty, if the run fails).
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pai_ros.errors import UserError
from pai_ros.wording import listed


def make_output_dir(path: Path) -> Path:
    """Create an output directory (and its parents), or say in one line why it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"the output directory {path} is a file")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():  # mkdir would say only "File exists"
        raise UserError(f"cannot create the output directory {path}: {above} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output directory {path}: {exc.strerror or exc}") from None
    return path


@contextmanager
def output_directory(path: Path) -> Iterator[Path]:
    """:func:`make_output_dir` for the length of one run: a run that fails removes the directories
    it created, as long as they are still empty (no empty output left behind to look like a result)."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    make_output_dir(path)
    try:
        yield path
    except BaseException:
        for directory in created:
            try:
                directory.rmdir()  # only an empty directory goes: whatever the run finished stays
            except OSError:
                break
        raise


def check_apart(output: Path, inputs: dict[str, Path | str | None]) -> None:
    """An output may not be, lie inside, or contain one of the command's inputs (keyed by what they are).

    Inside a dataset, a checkpoint or an SAE directory, the output's files mix with what other
    tools read there; a directory that contains an input would be deleted with it by --overwrite.
    Inputs that are not paths on this machine (hub ids) are skipped.
    """
    out = Path(output).resolve()
    for what, given in inputs.items():
        if given is None or not Path(given).exists():
            continue
        path = Path(given).resolve()
        if out == path:
            relation = "is"
        elif path in out.parents:
            relation = "is inside"
        elif out in path.parents:
            relation = "contains"
        else:
            continue
        raise UserError(f"the output {output} {relation} the {what} {given}: choose a path outside it")


#: A staging sibling's name (:func:`staging_path`): ``.<final name>.<tag>-<pid>``.
_STAGING_NAME = re.compile(r"\.(.+)\.(?:partial|old|tmp|probe)-\d+")
# A system error number in the text of an error that is not an OSError (safetensors' Rust writer).
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # errors that only a write gives

#: Written last into a finished output: every file the command wrote (relative POSIX paths).
MANIFEST_FILE = ".pai_written.json"


def write_manifest(directory: Path, *, leave_out: tuple[str, ...] = ()) -> None:
    """List every file now under ``directory`` (except ``leave_out``: files kept from the user) as written
    by the command, so that a later ``--overwrite`` can tell them from files added since."""
    directory = Path(directory)
    files = _files_under(directory)
    with staged_file(directory / MANIFEST_FILE) as tmp:  # (jsonfile builds on this module, not the reverse)
        tmp.write_text(json.dumps([f for f in files if f not in leave_out], indent=0) + "\n", encoding="utf-8")


def unwritten_files(directory: Path) -> list[str] | None:
    """Files under ``directory`` its manifest does not list (added since: the user's); None without a manifest
    (an output from before manifests, or one whose run did not finish)."""
    directory = Path(directory)
    manifest = directory / MANIFEST_FILE
    if not manifest.exists():
        return None
    try:
        written = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        written = None
    if not isinstance(written, list):
        # Damaged: what was added since can no longer be told apart, so nothing may be deleted.
        raise UserError(f"{manifest}, the list of the files written there, is damaged; move out what you want "
                        "to keep, then delete the directory")
    known = set(map(str, written))
    return [rel for rel in _files_under(directory) if rel not in known]


def _files_under(directory: Path) -> list[str]:
    """Every file (or link) under ``directory``, relative and sorted: not the manifests themselves (a nested
    output's included) nor a killed writer's hidden staging leftovers (``.name.tmp-123``: nobody's work)."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name != MANIFEST_FILE
                  and not _STAGING_NAME.fullmatch(p.name))


def check_replaceable(output: Path, overwrite: bool, *, made_by: str, is_mine: Callable[[Path], bool],
                      what_marks_it: str, keep: tuple[str, ...] = (), derived: tuple[str, ...] = ()) -> set[str]:
    """``output`` may be written: absent, an empty directory, or (with ``overwrite``) ``made_by``'s own.
    Returns the files it holds now, those checked (:func:`output_files`: ``staged_directory(checked=...)``
    keeps any added while the command works).

    ``--overwrite`` replaces a directory whole, so it may only replace what this command wrote
    before, as ``is_mine`` recognises it (``what_marks_it`` says how, for the message): pointed at
    a directory of the user's own files, or at a file, it used to delete them. Files added to an
    earlier output since (not in its :data:`MANIFEST_FILE`) are refused too, unless the command
    carries them over itself (``keep``) or they match ``derived`` (``fnmatch`` patterns of what other
    pai commands compute from the output, e.g. an analysis: made again from the new output).
    """
    output = Path(output)
    if not output.exists() and not output.is_symlink():
        return set()
    if output.is_dir() and not any(output.iterdir()):
        return set()
    if not output.is_dir():
        raise UserError(f"output {output} exists and is not a directory; choose a new path")
    if not is_mine(output):
        raise UserError(f"output {output} is not empty and is not an earlier {made_by} output (no {what_marks_it}); "
                        f"choose a new path (--overwrite replaces only {made_by} outputs)")
    if not overwrite:
        raise UserError(f"output {output} holds an earlier {made_by} output; choose a new path or pass --overwrite")
    check_nothing_added(output, made_by=made_by, keep=keep, derived=derived)
    return output_files(output)


def check_nothing_added(output: Path, *, made_by: str, keep: tuple[str, ...] = (),
                        derived: tuple[str, ...] = ()) -> None:
    """One line when ``output``, an earlier output of ``made_by`` about to be replaced, holds files its
    :data:`MANIFEST_FILE` does not list (``keep`` and ``derived`` as for :func:`check_replaceable`)."""
    added = [f for f in unwritten_files(output) or []
             if f not in keep and not any(fnmatch.fnmatchcase(f, pattern) for pattern in derived)]
    if added:
        raise UserError(f"output {output} holds file(s) that {made_by} did not write ({listed(added)}); --overwrite "
                        "deletes only what it wrote: move them out first, or choose a new path")


def json_file_with(path: Path, keys: tuple[str, ...]) -> bool:
    """``path`` is a JSON object with all of ``keys``: how a command recognises its own summary file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(k in data for k in keys)


# What each per-episode command leaves in its output directory, to tell them apart: they all write
# episode_NNNNNN folders, and one pointed at another's directory replaced or mixed its episodes.
RESULT_KINDS = {"recorded features (pai features record)": "record.json",
                "SAE activations (pai sae collect)": "collect.json",
                "attention (pai attention)": "episode_*/summary.json"}


def check_no_other_results(output: Path, mine: str) -> None:
    """One line when ``output`` holds another command's per-episode results (``mine``: this command's kind)."""
    output = Path(output)
    if not output.is_dir():
        return
    for kind, pattern in RESULT_KINDS.items():
        if kind != mine and next(output.glob(pattern), None) is not None:
            raise UserError(f"{output} holds {kind}; write into another output directory")


def check_only_own_entries(output: Path, own: tuple[str, ...], command: str, option: str) -> None:
    """Refuse an existing directory holding entries of the user's (names not starting with ``own``).

    Per-episode commands write beside whatever their output holds, so ``--output-dir ~/Documents``
    would mix episode folders into the user's files; a hidden entry is a staging one.
    """
    output = Path(output)
    if not output.is_dir():
        return
    others = sorted(p.name for p in output.iterdir() if not p.name.startswith((".", *own)))
    if others:
        raise UserError(f"{output} holds other files ({listed(others)}) and is not a `{command}` directory: "
                        f"choose a new {option}")


def staging_path(final: Path, tag: str = "partial") -> Path:
    """The hidden sibling ``.<name>.<tag>-<pid>`` that work for ``final`` is staged in."""
    return final.parent / f".{final.name}.{tag}-{os.getpid()}"


def describe_os_error(exc: OSError) -> str:
    """``exc`` as one line about the user's path: a staging name (``.out.partial-123/x.parquet``) is
    said as the output it stands for, and an error without a path (a full disk during a write) says so."""
    reason = exc.strerror or str(exc)
    if not exc.filename:
        full = exc.errno in _FULL
        return f"{reason} (while writing an output)" if full else reason
    parts = Path(str(exc.filename)).parts
    for i, part in enumerate(parts):
        staged = _STAGING_NAME.fullmatch(part)
        if staged:
            return f"cannot write the output {Path(*parts[:i], staged.group(1))}: {reason}"
    return f"{reason}: {exc.filename}"


def swap_into_place(staged: Path, final: Path, *, checked: set[str] | None = None,
                    discard: tuple[str, ...] = ()) -> None:
    """Move the finished ``staged`` directory to ``final``, replacing what was there.

    The old output is renamed aside, the new one renamed in, and only then is the old one
    deleted: both renames are atomic on one filesystem. With ``checked`` (the files ``final`` held
    when the command checked it, before its work: :func:`output_files`), a file added to the old
    output since, and not by a pai command (its manifest does not list it), is moved into the new
    output rather than deleted with the old: a note dropped in during an hour-long conversion.
    ``discard`` (``fnmatch`` patterns) names what belongs to the old output and goes with it (a
    calibration of the SAE being replaced). The new output is swapped in first, so the work is
    never lost to them: one that cannot be moved (the new output has a file of that name, or the
    system refuses) stays in the old output, which is then kept as ``<final>.previous`` and named
    in one line.
    """
    if not final.exists() and not final.is_symlink():
        os.replace(staged, final)
        return
    old = staging_path(final, "old")
    _remove(old)
    os.replace(final, old)
    try:
        os.replace(staged, final)
    except BaseException:
        os.replace(old, final)  # put the previous output back rather than leave nothing
        raise
    left = []
    for rel in _added_since(old, checked, discard):
        try:
            if _taken(final, rel):
                raise FileExistsError(rel)
            (final / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(old / rel, final / rel)
        except OSError:
            left.append(rel)
    if left:
        kept = _free_name(final.parent / f"{final.name}.previous")
        os.replace(old, kept)  # a visible name: a hidden .old would be removed as a dead run's leftover
        raise UserError(f"{final} is written, but file(s) added to it while the command ran ({listed(left)}) "
                        f"could not be moved into it (the new output has the same name, or the system refused): the "
                        f"previous output, with them, is kept as {kept}")
    _remove(old)


def output_files(directory: Path) -> set[str]:
    """The files under ``directory`` now (none when absent): what a command checked before its work, for
    :func:`staged_directory` to tell from files added while it ran."""
    directory = Path(directory)
    return set(_files_under(directory)) if directory.is_dir() else set()


def _added_since(old: Path, checked: set[str] | None, discard: tuple[str, ...]) -> list[str]:
    """The files of ``old`` that are neither ``checked``, nor a pai command's (another run of this one may
    have swapped its output in meanwhile: its manifest lists them), nor ``discard``."""
    if checked is None or not old.is_dir():
        return []
    try:
        written = set(map(str, json.loads((old / MANIFEST_FILE).read_text(encoding="utf-8"))))
    except (OSError, ValueError, TypeError):
        written = set()
    return [rel for rel in _files_under(old) if rel not in checked and rel not in written
            and not any(fnmatch.fnmatchcase(rel, pattern) for pattern in discard)]


def _free_name(path: Path) -> Path:
    n = 1
    candidate = path
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _taken(directory: Path, rel: str) -> bool:
    """``directory / rel`` cannot be created: it exists, or a file stands where one of its folders would."""
    target = directory / rel
    if target.exists() or target.is_symlink():
        return True
    return any(p.exists() and not p.is_dir() for p in target.parents if p.is_relative_to(directory))


@contextmanager
def staged_directory(final: Path, *, create: bool = True, checked: set[str] | None = None,
                     discard: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a fresh staging path for ``final``; swap it in if the block succeeds.

    ``create=False`` yields the path without creating it, for writers that insist on making
    their directory themselves (LeRobot's dataset writer, ``shutil.copytree``). On any
    exception the staging directory is removed and ``final`` is left as it was.
    ``checked``: a command that refused an output holding the user's files (:func:`check_replaceable`)
    passes what it checked (:func:`output_files`, taken then, before its work), and files added since
    are kept (``discard`` excepted; see :func:`swap_into_place`).
    """
    final = Path(final)
    if final.exists() and Path.cwd().resolve().is_relative_to(final.resolve()):
        # Replacing it renames it aside, which the system refuses for the working directory (EBUSY).
        raise UserError(f"the output {final} is the current directory or contains it; choose another path")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(final)
    staged = staging_path(final)
    _remove(staged)
    if create:
        staged.mkdir()
    try:
        yield staged
        swap_into_place(staged, final, checked=checked, discard=discard)
    except Exception as exc:
        # Only a full disk is surely about this output: another error without a file may be an input's.
        named = _naming(exc, staged, full_disk_only=True)
        if named is None:
            raise
        raise named from exc
    finally:
        _remove(staged)


@contextmanager
def staged_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it over ``final`` if the block succeeds.

    The name does not end in ``final``'s suffix, so a writer that infers the format from it
    (matplotlib) must be told. On any exception the temporary file is removed and ``final`` is
    left as it was.
    """
    final = Path(final)
    # No scan for abandoned siblings here: a collection writes thousands of files into one
    # directory, and a scan per file would be quadratic; a killed file write leaves a hidden .tmp.
    tmp = staging_path(final, "tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        # safetensors writes its files owner-only (0600); every output gets the mode the user's
        # umask gives new files, or a policy node running as another user cannot read the SAE.
        os.chmod(tmp, _NEW_FILE_MODE)
        os.replace(tmp, final)
    except Exception as exc:
        named = _naming(exc, tmp)
        if named is None:
            raise
        raise named from exc
    finally:
        tmp.unlink(missing_ok=True)


def _naming(exc: Exception, staged: Path, *, full_disk_only: bool = False) -> OSError | None:
    """A system error from a writer that names no file, as an :class:`OSError` naming ``staged`` (which
    :func:`describe_os_error` says as the output it stands for: a shard among thousands); None for others.
    ``full_disk_only`` (a block that may also read inputs or write caches): only a full disk, and only when
    ``staged``'s own filesystem is the full one.

    Python's and pyarrow's writes on a full disk name no file, and safetensors raises its own error
    type with the system's error number only in its text ("I/O error: No space left on device (os
    error 28)"): uncaught, that was a traceback for a full disk.
    """
    if isinstance(exc, OSError):
        number = None if exc.filename else exc.errno
    else:
        found = _RUST_OS_ERROR.search(str(exc))
        number = int(found.group(1)) if found else None
    if number is None:
        return None
    if full_disk_only and (number not in _FULL or (number == errno.ENOSPC and _has_room(staged))):
        return None  # not a full disk, or another filesystem's (a cache, /tmp): not about this output
    return OSError(number, os.strerror(number), str(staged))


def _has_room(path: Path, room: int = 64 << 20) -> bool:
    """``path``'s filesystem (or its nearest existing folder's) has ``room`` bytes free."""
    where = next((p for p in (Path(path), *Path(path).parents) if p.exists()), None)
    try:
        stats = os.statvfs(where) if where is not None else None
    except OSError:
        return False
    return stats is not None and stats.f_bavail * stats.f_frsize >= room


def _umask() -> int:
    mask = os.umask(0o022)  # read it the only way there is (at import, before any thread writes files)
    os.umask(mask)
    return mask


_NEW_FILE_MODE = 0o666 & ~_umask()


def remove_abandoned_staging(final: Path) -> None:
    """Delete ``final``'s staging siblings (``.partial``, ``.old``, ``.tmp``) left by processes that are gone.

    Only those of dead processes: another live process may be writing the same output right now.
    """
    for stale in Path(final).parent.glob(f".{glob.escape(Path(final).name)}.*-*"):
        tag, _, pid = stale.name.rpartition("-")
        if tag.endswith((".partial", ".old", ".tmp")) and pid.isdigit() and not _alive(int(pid)):
            _remove(stale)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_all_staging_under(directory: Path) -> None:
    """Delete every staging directory (``.*.partial-*``, ``.*.old-*``) under ``directory``, a live
    writer's too (unlike :func:`remove_abandoned_staging`): only for a caller that holds the lock
    which keeps every other writer out (the demo asset cache)."""
    for pattern in (".*.partial-*", ".*.old-*"):
        for stale in Path(directory).rglob(pattern):
            _remove(stale)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
