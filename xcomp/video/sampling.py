"""Which frames to take from a video: the VideoChat-Flash "dynamic fps" rule.

The reference (VideoChat-Flash ``get_frame_indices`` with ``sample_type=dynamic_fps1``) samples
``fps`` frames per second of video, clamps the count to ``[frames_lowbound, frames_upbound]``,
keeps it a multiple of ``local_num_frames`` (the model encodes frames in groups of that size),
and takes the middle frame of each of ``n`` equal segments. When the video has fewer frames than
the lower bound it does not invent frames: it takes every available frame, rounded down to a
multiple of ``local_num_frames``. We follow that, and pad by repetition only when the video is
shorter than a single group (the model cannot take a partial group).

An explicit ``num_frames`` request is honoured exactly (no clamping, no rounding). Asking for
more frames than the video has is an error unless ``allow_repeat`` is set, because silently
duplicating frames changes what a benchmark measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xcomp.errors import ConfigError, VideoError


@dataclass(frozen=True)
class FrameSamplingConfig:
    """How many frames to sample from a video and at what resolution."""

    fps: float = 1.0
    """Frames sampled per second of video before clamping (the reference uses 1)."""
    min_frames: int = 64
    """Lower bound on the sampled count (reference ``frames_lowbound``)."""
    max_frames: int = 1024
    """Upper bound on the sampled count (reference ``frames_upbound``)."""
    multiple_of: int = 4
    """The sampled count is a multiple of this (reference ``local_num_frames``)."""
    size: int | None = 448
    """Frames are resized to size x size (PIL bicubic, aspect not kept); None keeps the original."""
    folder_fps: float = 1.0
    """Frame rate assumed for a folder of frame images (the reference assumes 1)."""
    allow_repeat: bool = False
    """Repeat frames when an explicit ``num_frames`` exceeds the video's frames, instead of failing."""

    def __post_init__(self) -> None:
        if not self.fps > 0 or not self.folder_fps > 0:
            raise ConfigError(f"sampling fps must be positive (fps={self.fps}, folder_fps={self.folder_fps})")
        if self.multiple_of < 1:
            raise ConfigError(f"multiple_of must be >= 1, got {self.multiple_of}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ConfigError(f"need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if self.size is not None and self.size < 1:
            raise ConfigError(f"size must be positive or None, got {self.size}")


@dataclass(frozen=True)
class FrameSchedule:
    """The frames to decode: native frame indices and their nominal times."""

    indices: np.ndarray
    """int64 [T] native frame indices, non-decreasing (repeats only when padding)."""
    timestamps: np.ndarray
    """float64 [T] seconds from the start of the video (index / native fps)."""


def target_frame_count(duration: float, config: FrameSamplingConfig) -> int:
    """Frames to sample for a video of ``duration`` seconds, before capping to what the video has.

    The clamped count is rounded down to a multiple of ``multiple_of`` (at least one group), so it
    can fall below ``min_frames`` only when the bounds are not multiples themselves.
    """
    n = round(duration * config.fps)
    n = min(max(n, config.min_frames), config.max_frames)
    return max(n // config.multiple_of, 1) * config.multiple_of


def sample_frames(
    duration: float,
    native_fps: float,
    n_total: int,
    config: FrameSamplingConfig,
    num_frames: int | None = None,
    source: str = "video",
) -> FrameSchedule:
    """Pick frame indices (segment centres) and timestamps for a video of ``n_total`` frames.

    ``source`` only names the video in error messages.
    """
    if n_total < 1:
        raise VideoError(f"{source}: video has no decodable frames")
    if not native_fps > 0:
        raise VideoError(f"{source}: video reports an invalid frame rate ({native_fps})")
    if num_frames is not None:
        if num_frames < 1:
            raise VideoError(f"{source}: num_frames must be >= 1, got {num_frames}")
        if num_frames > n_total and not config.allow_repeat:
            raise VideoError(
                f"{source}: {num_frames} frames requested but the video has only {n_total} "
                "(set allow_repeat to repeat frames)"
            )
        n = num_frames
    else:
        n = target_frame_count(duration, config)
        if n > n_total:
            n = max(n_total // config.multiple_of * config.multiple_of, config.multiple_of)
    indices = np.floor((np.arange(n) + 0.5) * (n_total / n)).astype(np.int64)
    indices = np.minimum(indices, n_total - 1)
    return FrameSchedule(indices=indices, timestamps=indices / float(native_fps))
