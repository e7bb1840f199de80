"""Measuring one stage of an answer: its median time over repeats and its peak working memory (CUDA's allocator, or
on the CPU the live tensor storages the stage creates)."""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MIB = 2**20


class _TensorMemory(TorchDispatchMode):
    """Live and peak bytes of the tensor storages that ops create inside the block (CPU peak memory).

    An op output whose storage is not one of the op's inputs' is a new allocation; it is counted until its
    storage is freed (a weakref finalizer on the storage object, which torch keeps alive with the storage).
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if _is_dense(t)}
        for t in tree_flatten(out)[0]:
            if _is_dense(t):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key not in inputs and key not in self._tracked and storage.nbytes():
                    self._tracked.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out

    def _free(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes


def _is_dense(t) -> bool:
    return isinstance(t, torch.Tensor) and t.layout == torch.strided and t.device.type != "meta"


class PeakMemory:
    """Peak bytes allocated inside the block above what was allocated on entry."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0
        self._mode = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._mode = _TensorMemory().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._mode.__exit__(*exc)
            self.peak = self._mode.peak


@dataclass
class Stage:
    """One measured stage."""

    seconds: float
    """Median over the timed calls."""
    peak_bytes: int
    """Peak working memory of the first call (see `PeakMemory`)."""


def measure(
    fn: Callable[[], object], device: torch.device, warmup: int, repeats: int
) -> tuple[Stage, object]:
    """Median seconds of `repeats` calls of `fn` after `warmup` calls; memory of the first call; last output."""
    times, out, peak = [], None, 0
    for i in range(warmup + max(repeats, 1)):
        out = None
        with PeakMemory(device) if i == 0 else nullcontext() as memory:
            _sync(device)
            start = time.perf_counter()
            out = fn()
            _sync(device)
            seconds = time.perf_counter() - start
        if i == 0:
            peak = memory.peak
        if i >= warmup:
            times.append(seconds)
    return Stage(statistics.median(times), peak), out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
