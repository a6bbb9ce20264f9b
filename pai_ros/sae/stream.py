"""Training batches streamed from shards through a bounded shuffle buffer.

Memory is bounded by ``buffer_tokens`` (plus ``prefetch`` chunks of ``chunk_rows``), never by the
collection: the collection is cut into pieces of at most ``chunk_rows`` rows, every epoch
visits the pieces in a fresh seeded order (so consecutive pieces come from anywhere in the
collection, across shards and episodes), and batches are drawn at random from a buffer of ``buffer_tokens`` rows whose
drawn slots are refilled from the stream. A token therefore meets tokens from many shards in
its batch, as with a global shuffle, while only the buffer is resident.

When a rank's whole training share fits in the buffer it is read once and kept (epochs of a
seeded permutation, as the in-memory path does): small collections train exactly as before.

With several ranks (``torchrun``) every epoch's piece order is the same on all ranks and rank
``r`` reads pieces ``r, r + world, ...``: the ranks see disjoint data.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pai_ros.errors import UserError
from pai_ros.sae.shards import Shard, ShardSet, read_rows

CHUNK_ROWS = 4096
BUFFER_TOKENS = 65_536
# Pieces read ahead by a thread. 0 (the default) reads on the training thread: measured on 2
# cores, handing pieces between threads cost more (GIL switches) than reading them (a 1,680-row
# float16 piece reads in 1.6 ms; refilling 32k buffer slots costs ~1.5 ms per training step).
PREFETCH = 0


@dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` of one shard; ``offset`` is the first row's index in the whole set."""

    shard: Shard
    start: int
    stop: int
    offset: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass
class StreamSplit:
    """Training and held-out pieces. ``by == "row"``: each piece's rows are split by a seeded draw."""

    train: list[Piece]
    heldout: list[Piece]
    by: str  # "episode" or "row"
    holdout: float
    seed: int
    heldout_episodes: list[int] = field(default_factory=list)

    def held_mask(self, piece: Piece) -> torch.Tensor | None:
        """Which rows of ``piece`` are held out (row split), or None (episode split: the whole piece)."""
        if self.by != "row":
            return None
        # Seeded by the piece's global offset: the same row is held out whichever rank reads it.
        draw = np.random.default_rng([self.seed, piece.offset]).random(piece.rows)
        return torch.from_numpy(draw < self.holdout)

    def rows(self, piece: Piece, heldout: bool) -> torch.Tensor:
        """Float32 activations of ``piece`` that belong to the training (or held-out) side."""
        acts = read_rows(piece.shard, piece.start, piece.stop)["activations"]
        mask = self.held_mask(piece)
        if mask is None:
            return acts
        return acts[mask if heldout else ~mask]

    def count(self, pieces: list[Piece], heldout: bool) -> int:
        total = 0
        for p in pieces:
            mask = self.held_mask(p)
            total += p.rows if mask is None else int(mask.sum() if heldout else (~mask).sum())
        return total


def _pieces(shards: list[Shard], chunk_rows: int, offsets: dict[Path, int]) -> list[Piece]:
    return [Piece(s, a, min(a + chunk_rows, s.rows), offsets[s.path] + a)
            for s in shards for a in range(0, s.rows, chunk_rows)]


def plan_split(data: ShardSet, holdout: float, seed: int, chunk_rows: int = CHUNK_ROWS,
               max_tokens: int | None = None) -> StreamSplit:
    """Hold out whole episodes (the last ``holdout`` share) when there are two or more, else rows."""
    if data.rows < 2:
        raise UserError(f"need at least 2 activation vectors to train and evaluate, got {data.rows}")
    offsets, at = {}, 0
    for s in data.shards:
        offsets[s.path], at = at, at + s.rows
    episodes = data.episodes
    if len(episodes) >= 2:
        count = max(1, int(round(holdout * len(episodes))))
        held = set(episodes[-count:])
        split = StreamSplit(_pieces([s for s in data.shards if s.episode not in held], chunk_rows, offsets),
                            _pieces([s for s in data.shards if s.episode in held], chunk_rows, offsets),
                            "episode", holdout, seed, sorted(held))
    else:
        every = _pieces(data.shards, chunk_rows, offsets)
        split = StreamSplit(every, every, "row", holdout, seed)
        if split.count(every, True) == 0 or split.count(every, False) == 0:
            raise UserError(f"{data.rows} rows are too few to hold out a --holdout {holdout} share; "
                            f"give more rows or a larger --holdout")
    if max_tokens is not None:
        # --max-tokens: evenly spaced pieces, so the subsample still spans the collection.
        keep = max(1, -(-max_tokens // chunk_rows))
        if keep < len(split.train):
            pick = np.linspace(0, len(split.train) - 1, keep).round().astype(int)
            split.train = [split.train[i] for i in pick]
    return split


class _Prefetcher:
    """A daemon thread that reads the next ``depth`` pieces ahead (I/O and dtype conversion off the
    training thread). Exceptions in the thread are re-raised by :meth:`get`."""

    def __init__(self, source: Iterator[torch.Tensor], depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), daemon=True, name="sae-prefetch")
        self._thread.start()

    def _run(self, source: Iterator[torch.Tensor]) -> None:
        try:
            for item in source:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 -- handed to the consumer, which raises it in the main thread
            self._queue.put(exc)

    def get(self) -> torch.Tensor:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class BatchStream:
    """An endless stream of ``[batch, d]`` float32 training batches for one rank.

    ``stats()`` gives the (sum, sum of squared norms, count) of the rows first loaded (the whole
    share when resident, else the first buffer fill: a sample from pieces across the
    collection), from which the SAE's input scaling and mean are initialised.
    """

    def __init__(self, split: StreamSplit, d: int, batch: int, *, buffer_tokens: int = BUFFER_TOKENS,
                 seed: int = 0, rank: int = 0, world: int = 1, prefetch: int = PREFETCH) -> None:
        if len(split.train) < world:
            raise UserError(f"{len(split.train)} training piece(s) cannot be shared by {world} ranks; "
                            f"use fewer processes or more data")
        if batch > buffer_tokens:
            raise UserError(f"--batch-size {batch} is larger than --shuffle-buffer {buffer_tokens}")
        self.split, self.d, self.batch, self.rank, self.world = split, d, batch, rank, world
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed * 7919 + rank)
        mine = split.train[rank::world]
        self.resident = split.count(mine, False) <= buffer_tokens
        self._prefetch: _Prefetcher | None = None
        if self.resident:
            # Fewer rows than a batch: every batch is all of them, as in the in-memory path.
            self.buffer = torch.cat([split.rows(p, False) for p in mine])
            self._order = torch.randperm(len(self.buffer), generator=self._gen)
            self._cursor = 0
        else:
            self._source = self._pieces_forever()
            if prefetch > 0:
                self._prefetch = _Prefetcher(self._source, prefetch)
            self._pending = torch.empty(0, d)
            self.buffer = torch.empty(buffer_tokens, d)
            self._fill(torch.arange(buffer_tokens))
            self._order = torch.randperm(buffer_tokens, generator=self._gen)
            self._cursor = 0
            self._emit = (buffer_tokens // 2 // batch) * batch or batch  # slots drawn between refills
        self.first_stats = (self.buffer.sum(dim=0, dtype=torch.float64),
                            float((self.buffer.double() ** 2).sum()), len(self.buffer))

    def _pieces_forever(self) -> Iterator[torch.Tensor]:
        epoch = 0
        while True:
            # Same order on every rank (seeded by epoch only); each rank reads its stride of it.
            order = torch.randperm(len(self.split.train), generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + epoch))
            for i in order[self.rank::self.world].tolist():
                rows = self.split.rows(self.split.train[i], False)
                if len(rows):
                    yield rows
            epoch += 1

    def _take(self, n: int) -> torch.Tensor:
        """The next ``n`` streamed rows (pieces concatenated as needed)."""
        parts, have = [], 0
        while have < n:
            if not len(self._pending):
                self._pending = self._prefetch.get() if self._prefetch else next(self._source)
            take = self._pending[:n - have]
            self._pending = self._pending[len(take):]
            parts.append(take)
            have += len(take)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _fill(self, slots: torch.Tensor) -> None:
        step = CHUNK_ROWS
        for a in range(0, len(slots), step):
            s = slots[a:a + step]
            self.buffer.index_copy_(0, s, self._take(len(s)))

    def stats(self) -> tuple[torch.Tensor, float, int]:
        return self.first_stats

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> torch.Tensor:
        if self.resident:
            if self._cursor + self.batch > len(self._order):
                self._order = torch.randperm(len(self.buffer), generator=self._gen)
                self._cursor = 0
            rows = self._order[self._cursor:self._cursor + self.batch]
            self._cursor += self.batch
            return self.buffer[rows]
        if self._cursor + self.batch > self._emit:
            # Refill the slots drawn since the last refill, then draw from a fresh permutation.
            self._fill(self._order[:self._cursor])
            self._order = torch.randperm(len(self.buffer), generator=self._gen)
            self._cursor = 0
        rows = self._order[self._cursor:self._cursor + self.batch]
        self._cursor += self.batch
        return self.buffer[rows]  # advanced indexing copies: later refills do not touch it

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()


def iter_heldout(split: StreamSplit, rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
    """This rank's share of the held-out rows, piece by piece (float32)."""
    for piece in split.heldout[rank::world]:
        rows = split.rows(piece, True)
        if len(rows):
            yield rows
