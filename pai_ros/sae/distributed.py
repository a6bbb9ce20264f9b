"""Several processes or machines through PyTorch's own runtime (``torchrun``), nothing home-made.

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address; :func:`world_from_env` joins the process group (gloo for CPU, NCCL for CUDA,
each rank on GPU ``LOCAL_RANK``). Outside torchrun it returns a one-process world and nothing
is initialised, so the same command works with and without it.

Ranks that were started with different arguments would silently train or collect different
things; :meth:`World.check_same` all-gathers a hash of the arguments that must agree and refuses
with one line when they do not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pai_ros.sae.errors import RankError

# How gloo says that the other end of a collective is gone, when it does not raise a DistError.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out", "timed out")


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: one process, no process group

    @property
    def world(self) -> int:  # the name fit_sae's sync object uses
        return self.size

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    # ------------------------------------------------------------------ collectives

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def all_reduce_(self, tensors: list[torch.Tensor]) -> None:
        """Sum each tensor over the ranks, in place (tensors are moved to the backend's device)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        dev = self._device()
        for t in tensors:
            moved = t.to(dev)
            with self._peers("while summing results"):
                dist.all_reduce(moved)
            if moved is not t:
                t.copy_(moved)

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Data-parallel step: every rank ends with the mean gradient (one flat all-reduce)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        with self._peers("during a training step"):
            dist.all_reduce(flat)
        flat /= self.size
        at = 0
        for g in grads:
            g.copy_(flat[at:at + g.numel()].view_as(g))
            at += g.numel()

    def union(self, mask: torch.Tensor) -> torch.Tensor:
        """True where any rank is True."""
        if not self.distributed:
            return mask
        import torch.distributed as dist

        counts = mask.to(torch.int32)
        with self._peers("during a training step"):
            dist.all_reduce(counts)
        return counts > 0

    def broadcast_ints(self, values: list[int] | None) -> list[int]:
        """Rank 0's list of ints on every rank (a length, then the values: no pickling)."""
        if not self.distributed:
            return list(values or [])
        import torch.distributed as dist

        dev = self._device()
        n = torch.tensor([len(values or []) if self.is_main else 0], dtype=torch.long, device=dev)
        with self._peers("while sharing out the work"):
            dist.broadcast(n, 0)
        buf = torch.tensor(values if self.is_main else [0] * int(n), dtype=torch.long, device=dev)
        if int(n):
            with self._peers("while sharing out the work"):
                dist.broadcast(buf, 0)
        return [int(v) for v in buf.cpu()]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            with self._peers("while waiting for the other ranks"):
                dist.barrier()

    @contextmanager
    def _peers(self, doing: str) -> Iterator[None]:
        """Around one ``torch.distributed`` call: a rank that stopped (its own error, killed, out of
        memory, its machine gone) shows in the others as an error of the collective they wait in
        (gloo: "Connection closed by peer"). That is one line, not a traceback. Anything else (this
        rank's own out-of-memory, a bug) goes on as it was raised.

        With NCCL a dead peer usually shows as a hang until NCCL's watchdog aborts the process,
        not as an exception: nothing here can turn that into a line.
        """
        import torch.distributed as dist

        try:
            yield
        except RuntimeError as exc:
            text = str(exc).strip()
            if not (isinstance(exc, dist.DistError) or any(m in text for m in _PEER_GONE)):
                raise
            first = text.splitlines()[0] if text else type(exc).__name__
            detail = re.sub(r"^\[[^\]]*\]\s*", "", first)[:160]  # not gloo's "[.../pair.cc:547]" source location
            raise RankError(f"rank {self.rank}: another rank stopped {doing} ({detail}); see that rank's own "
                            "error, if it printed one, then run the same command again on every rank (collect "
                            "resumes where it stopped)") from exc

    def check_same(self, what: dict[str, Any]) -> None:
        """Refuse (one line, on every rank) when the ranks' ``what`` differ."""
        if not self.distributed:
            return
        import torch.distributed as dist

        digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).digest()[:8]
        mine = torch.tensor([int.from_bytes(digest, "big", signed=True)], dtype=torch.long, device=self._device())
        every = [torch.zeros_like(mine) for _ in range(self.size)]
        with self._peers("while comparing arguments"):
            dist.all_gather(every, mine)
        values = [int(t) for t in every]
        if len(set(values)) > 1:
            differ = [r for r, v in enumerate(values) if v != values[0]]
            raise RankError(f"torchrun ranks were started with different arguments (rank(s) "
                            f"{', '.join(map(str, differ))} differ from rank 0); start every rank with the same "
                            f"command (paths are compared as absolute paths: give them so, or start every rank "
                            f"from the same directory)")

    def close(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _launched_size() -> int:
    """How many processes torchrun started (``WORLD_SIZE``; 1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def world_from_env(device: str) -> World:
    """Join the torchrun process group when started by torchrun (``WORLD_SIZE`` > 1), else one process.

    ``device`` is the command's ``--device``: ``cuda`` puts rank ``LOCAL_RANK`` on GPU ``LOCAL_RANK``
    with NCCL; anything else uses gloo on CPU.
    """
    size = _launched_size()
    if size <= 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise RankError("--device cuda under torchrun, but CUDA is not available on this machine")
        if torch.cuda.device_count() <= local:
            raise RankError(f"rank {rank} wants GPU {local} (LOCAL_RANK), but this machine has "
                            f"{torch.cuda.device_count()}: use --nproc-per-node <= the number of GPUs")
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=dt.timedelta(minutes=60))
    return World(rank, size, local, backend)


def same_everywhere(arguments: dict[str, Any], paths: tuple[str, ...]) -> dict[str, str]:
    """``arguments`` as :meth:`World.check_same` must compare them: the ``paths`` as absolute paths.

    ``--output acts`` on two machines whose shells are in different directories names two
    directories: compared as given, the ranks agreed and split one collection across both.
    ``acts`` and ``/data/acts`` from ``/data`` are the same directory and agree. A path argument
    that is no local path (a hub id for ``--policy-path``) is compared as given.
    """
    out = {}
    for key, value in arguments.items():
        if key in paths and value is not None and (key != "policy_path" or Path(value).exists()):
            value = os.path.abspath(value)  # not resolve(): a mount reached through a link on one machine only
        out[key] = str(value)
    return out


def refuse_torchrun(command: str) -> None:
    """One line when ``command``, which runs in one process, was started by torchrun with several: every
    rank would do all the work and write the same files at once."""
    if _launched_size() > 1:
        raise RankError(f"{command} runs in one process: start it without torchrun (only `pai sae collect` and "
                        "`pai sae train` use several)")


def rank_device(device: str, world: World) -> str:
    """``cuda`` (and ``auto`` on a machine with GPUs) -> ``cuda:LOCAL_RANK`` under torchrun, one GPU
    per rank; other values unchanged (``cuda:N`` pins every rank to GPU N, as asked)."""
    if world.distributed and (device == "cuda" or (device == "auto" and torch.cuda.is_available())):
        return f"cuda:{world.local_rank % max(1, torch.cuda.device_count())}"
    return device
