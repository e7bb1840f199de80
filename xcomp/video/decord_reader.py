"""Decode scheduled frames with decord (the ``decord2`` fork, imported as ``decord``).

decord is what LLaVA, VideoChat-Flash and XComp decode with. It is an optional extra
(``pip install -e ".[decord]"``). ``decord2`` 3.4.0 (2026-05; cp311 wheels for x86-64 and aarch64
Linux and arm64 macOS, checked) is supported rather than ``decord`` 0.6.0 (last release 2021, x86-64
wheels only): both install under the import name ``decord`` and overwrite each other, and the fork
keeps the ``VideoReader`` / ``get_batch`` / ``get_frame_timestamp`` API.

The frames to read are the PyAV backend's schedule (same container probe, same sampling rule), so
both backends take the same native frame indices. Frames are fetched ``CHUNK`` at a time with
``get_batch`` and resized with the same PIL bicubic as the PyAV path as they arrive, so memory holds
the output array plus one chunk of full-resolution frames, never the whole batch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

CHUNK = 16
"""Frames fetched per ``get_batch`` call: bounds the full-resolution frames held at once."""


class DecordFailure(Exception):
    """decord could not read the file; its message, cut to one line."""


def available() -> bool:
    """Whether decord (from the ``decord2`` wheel) can be imported here."""
    return importlib.util.find_spec("decord") is not None


def read_frames(path: Path, indices: np.ndarray, store, threads: int = 0) -> None:
    """Call ``store(slot, frame, time)`` for each scheduled index, in order, with full-size RGB frames."""
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
        last = len(reader) - 1
        # Container metadata may count a frame or two more than decord's index holds.
        wanted = np.minimum(indices, last)
        times = reader.get_frame_timestamp(wanted.tolist())[:, 0]
        for start in range(0, len(wanted), CHUNK):
            batch = reader.get_batch(wanted[start : start + CHUNK].tolist()).asnumpy()
            for offset, frame in enumerate(batch):
                store(start + offset, frame, float(times[start + offset]))
    except (RuntimeError, decord.DECORDError) as error:
        raise DecordFailure(_one_line(error)) from error


def _one_line(error: Exception) -> str:
    """decord's messages carry a timestamp, a source location and a check expression: keep the reason."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.rsplit(") ", 1)[-1] if "Check failed" in text else text.split("] ", 1)[-1]
