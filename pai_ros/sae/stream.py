"""Training batches streamed from shards through a bounded shuffle buffer.

Memory is bounded by ``buffer_tokens`` (plus one piece of ``chunk_rows`` being read), never by the
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

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pai_ros.data.episodes import pick_evenly
from pai_ros.errors import UserError
from pai_ros.sae.shards import RowReader, Shard, ShardSet, read_activation_rows

CHUNK_ROWS = 4096
BUFFER_TOKENS = 65_536
# Pieces are read on the training thread: a thread reading ahead cost more than the reads on 2
# cores (it competes with torch's own threads for both cores), measured 2026-12-02 and 2026-12-03.


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

    def rows(self, piece: Piece, heldout: bool, reader: RowReader | None = None) -> torch.Tensor:
        """Float32 activations of ``piece`` that belong to the training (or held-out) side; with
        ``reader``, a view into its memory that its next read overwrites."""
        acts = reader.read(piece.shard, piece.start, piece.stop) if reader else \
            read_activation_rows(piece.shard, piece.start, piece.stop)
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
        split.train = [split.train[i] for i in pick_evenly(len(split.train), keep)]
    return split


class BatchStream:
    """An endless stream of ``[batch, d]`` float32 training batches for one rank.

    ``stats()`` gives the (sum, sum of squared norms, count) of the rows first loaded (the whole
    share when resident, else the first buffer fill: a sample from pieces across the
    collection), from which the SAE's input scaling and mean are initialised.
    """

    def __init__(self, split: StreamSplit, d: int, batch: int, *, buffer_tokens: int = BUFFER_TOKENS,
                 seed: int = 0, rank: int = 0, world: int = 1) -> None:
        if not len(split.train):
            raise UserError("the held-out share (--holdout) leaves nothing to train on: lower it, or collect "
                            "more episodes")
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
        if self.resident:
            # Fewer rows than a batch: every batch is all of them, as in the in-memory path.
            self.buffer = torch.cat([split.rows(p, False) for p in mine])
            self._order = torch.randperm(len(self.buffer), generator=self._gen)
            self._cursor = 0
        else:
            self._reader = RowReader()
            self._source = self._pieces_forever()
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
                rows = self.split.rows(self.split.train[i], False, self._reader)
                if len(rows):
                    yield rows
            epoch += 1

    def _fill(self, slots: torch.Tensor) -> None:
        """Streamed rows into ``slots``, straight from each piece (no concatenated copy)."""
        at = 0
        while at < len(slots):
            if not len(self._pending):
                self._pending = next(self._source)  # the previous piece is used up: its memory is reused
            take = self._pending[:len(slots) - at]
            self.buffer.index_copy_(0, slots[at:at + len(take)], take)
            self._pending = self._pending[len(take):]
            at += len(take)

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
            # In ascending order: the copies then walk the buffer forwards (a third faster than
            # scattering at random), and where a row sits in the buffer does not matter.
            self._fill(self._order[:self._cursor].sort().values)
            self._order = torch.randperm(len(self.buffer), generator=self._gen)
            self._cursor = 0
        rows = self._order[self._cursor:self._cursor + self.batch]
        self._cursor += self.batch
        return self.buffer[rows]  # advanced indexing copies: later refills do not touch it

    def close(self) -> None:
        """Nothing to release (kept so that callers need not know how pieces are read)."""


def iter_heldout(split: StreamSplit, rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
    """This rank's share of the held-out rows, piece by piece (float32)."""
    for piece in split.heldout[rank::world]:
        rows = split.rows(piece, True)
        if len(rows):
            yield rows
