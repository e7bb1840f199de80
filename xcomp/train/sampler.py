"""The order in which a training run sees its samples, from any step on.

Lightning restores a run's step from a checkpoint but not a plain data loader's position, and torchdata's
`StatefulDataLoader` (which Lightning does restore) restarts a later epoch with the first epoch's order (checked
here with lightning 2.6.6 / torchdata 0.11: after a resume in epoch 2 the batches repeat epoch 1). A run here has a
fixed number of steps, so its whole sample stream is one deterministic sequence: the batch sampler below is built
at the restored step and yields that step's batches onwards, so a resumed run sees exactly the samples an
uninterrupted one would.

The order is that of the `accelerate` loop this replaced (its seedable sampler: epoch e shuffles with seed + e,
the incomplete last batch of each epoch is dropped, process r of W takes every W-th batch), so retraining a recipe
gives the weights it gave (checked bit for bit before that loop was removed: docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[int]]):
    """The micro-batches of one process for a whole run, starting at micro-batch ``start``."""

    def __init__(
        self, size: int, batch_size: int, seed: int, total: int, start: int = 0, rank: int = 0, world: int = 1
    ):
        if (size // batch_size) // world < 1:
            raise ValueError(f"{size} samples make no batch of {batch_size} on each of {world} processes")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.total, self.start, self.rank, self.world = total, start, rank, world
        self.per_epoch = (size // batch_size) // world
        """Micro-batches of one process per pass over the data."""

    def __len__(self) -> int:
        """All micro-batches of the run, those before ``start`` included: Lightning counts its batch index on
        from the restored step, and the epoch ends when the run does."""
        return self.total

    def __iter__(self) -> Iterator[list[int]]:
        for micro in range(self.start, self.total):
            epoch, k = divmod(micro, self.per_epoch)
            first = (k * self.world + self.rank) * self.batch_size
            yield _permutation(self.size, self.seed + epoch)[first : first + self.batch_size]


@lru_cache(maxsize=2)
def _permutation(size: int, seed: int) -> list[int]:
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
