"""Find Hugging Face hub checkpoints and datasets on this machine, never over the network.

``--policy-path lerobot/act_aloha_sim_transfer_cube_human`` or ``--dataset-repo-id
lerobot/aloha_sim_transfer_cube_human`` name repositories on the hub. pai_ros only looks them up
where the hub client and LeRobot have already put them, and when they are not there says in one
line how to download them:

* models: the hub cache, ``$HF_HOME/hub/models--<org>--<name>/snapshots/<commit>/`` (the commit
  that ``refs/main`` names), where ``hf download <repo>`` and ``from_pretrained`` put them;
* datasets: first LeRobot's own place, ``$HF_LEROBOT_HOME/<org>/<name>`` (default
  ``$HF_HOME/lerobot/<org>/<name>``, where ``LeRobotDataset(repo_id)`` downloads to), then the hub
  cache, ``$HF_HOME/hub/datasets--<org>--<name>/snapshots/<commit>/`` (``hf download --repo-type
  dataset``), at the ``v3.0`` tag LeRobot reads or else ``main``.

The cache locations are read from the environment at each call (the hub client and LeRobot
read them once, at import), so a process or a test that sets ``HF_HOME`` later is honoured.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pai_ros.errors import UserError

# LeRobot 0.4's dataset format tag: LeRobot downloads datasets at this revision.
DATASET_REVISION = "v3.0"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def is_repo_id(text: str) -> bool:
    """``org/name`` as the hub spells repository ids (not ``./x``, ``/abs``, ``a/b/c``, ``~/x``)."""
    return bool(_REPO_ID.match(text)) and ".." not in text and not text.endswith((".git", "."))


def hf_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.path.expandvars(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface"))).expanduser()


def hub_cache_dir() -> Path:
    """Where the hub client keeps downloads (same precedence as ``huggingface_hub.constants``)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expandvars(cache)).expanduser() if cache else hf_home() / "hub"


def lerobot_home() -> Path:
    """LeRobot's dataset directory (same rule as ``lerobot.utils.constants.HF_LEROBOT_HOME``)."""
    home = os.environ.get("HF_LEROBOT_HOME")
    return Path(home).expanduser() if home else hf_home() / "lerobot"


def _check_repo_id(repo_id: str, what: str) -> None:
    if not is_repo_id(repo_id):
        raise UserError(f"'{repo_id}' is not a Hugging Face {what} id (expected <org>/<name>, e.g. "
                        f"{'lerobot/act_aloha_sim_transfer_cube_human' if what == 'model' else 'lerobot/pusht'})")


def _cached_snapshot(repo_id: str, repo_type: str, revision: str) -> Path | None:
    """The snapshot folder the local hub cache holds for ``revision``, or None (no network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, repo_type=repo_type, revision=revision,
                                   cache_dir=str(hub_cache_dir()), local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None
    return Path(folder)


def model_download_command(repo_id: str) -> str:
    return f"hf download {repo_id}"


def dataset_download_command(repo_id: str) -> str:
    # What LeRobotDataset(repo_id) itself does: the v3.0 tag into HF_LEROBOT_HOME/<repo_id>.
    return (f"hf download {repo_id} --repo-type dataset --revision {DATASET_REVISION} "
            f"--local-dir {lerobot_home() / repo_id}")


def dataset_repo_of(root: Path) -> str | None:
    """The hub id of a dataset directory inside LeRobot's home or the hub cache, else None."""
    root = Path(root).expanduser().absolute()
    try:
        rel = root.relative_to(lerobot_home().absolute())
        if len(rel.parts) == 2:
            return "/".join(rel.parts)
    except ValueError:
        pass
    return _cached_repo_of(root, "datasets")


def model_repo_of(path: Path) -> str | None:
    """The hub id of a model snapshot directory (or a folder inside one) in the hub cache, else None."""
    path = Path(path).expanduser().absolute()
    for folder in (path, *path.parents):
        repo_id = _cached_repo_of(folder, "models")
        if repo_id:
            return repo_id
    return None


def _cached_repo_of(folder: Path, kind: str) -> str | None:
    """``<kind>--<org>--<name>/snapshots/<commit>`` in the hub cache -> ``org/name``."""
    try:
        rel = folder.relative_to(hub_cache_dir().absolute())
    except ValueError:
        return None
    if len(rel.parts) == 3 and rel.parts[1] == "snapshots" and rel.parts[0].startswith(f"{kind}--"):
        org_name = rel.parts[0][len(kind) + 2:].split("--", 1)
        if len(org_name) == 2:
            return "/".join(org_name)
    return None


def resolve_model(repo_id: str) -> Path:
    """The local snapshot directory of hub model ``repo_id`` (its ``refs/main`` commit)."""
    _check_repo_id(repo_id, "model")
    folder = _cached_snapshot(repo_id, "model", "main")
    if folder is None:
        raise UserError(f"'{repo_id}' is neither a local directory nor in the Hugging Face cache "
                        f"({hub_cache_dir()}); download it once with: {model_download_command(repo_id)}")
    return folder


def resolve_dataset(repo_id: str) -> Path:
    """The local root of hub dataset ``repo_id``: LeRobot's own copy first, then the hub cache."""
    _check_repo_id(repo_id, "dataset")
    own = lerobot_home() / repo_id
    if (own / "meta" / "info.json").is_file():
        return own
    for revision in (DATASET_REVISION, "main"):
        folder = _cached_snapshot(repo_id, "dataset", revision)
        if folder is not None and (folder / "meta" / "info.json").is_file():
            return folder
    raise UserError(f"dataset '{repo_id}' is not on this machine (looked in {own} and the Hugging Face cache "
                    f"{hub_cache_dir()}); download it once with: {dataset_download_command(repo_id)}")
