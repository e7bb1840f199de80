"""Decode sampled frames from a video file or a folder of frame images.

Decoder choice (measured on the 2-core x86-64 dev machine, see docs/synthetic_suite.md):

* PyAV 18 (FFmpeg 8 bundled in the wheel, wheels for x86-64/aarch64 Linux, macOS and Windows,
  actively maintained) is the decoder. It exposes container seeking and frame timestamps, so
  sparse sampling can seek to the keyframe before each wanted frame and decode forward.
* torchcodec 0.17 installs from PyPI but does not bundle FFmpeg: it fails to load without the
  system FFmpeg shared libraries (``apt install ffmpeg``), which the project cannot assume. With
  them installed its exact-seek sampling was not faster than PyAV here.
* decord 0.6.0 (last release 2021, x86-64 wheels only, no aarch64) still imports, and was slower
  than PyAV's seek-based path for 1,024 frames from a long video; the maintained forks
  (eva-decord) are the same code base.

No second library is kept as a fallback at runtime: PyAV covers every container/codec FFmpeg
supports, and frame folders are read with Pillow.

Memory stays bounded: every wanted frame is converted and resized as soon as it is decoded and
written into one preallocated ``[T, size, size, 3]`` array; decoded frames are never collected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image
from tqdm import tqdm

from xcomp.errors import VideoError
from xcomp.video.sampling import FrameSamplingConfig, FrameSchedule, sample_frames

DecodeStrategy = Literal["auto", "seek", "sequential"]
"""auto: seek only when a keyframe is likely between the current position and the next wanted frame;
seek: seek before every wanted frame that is not the next one; sequential: never seek."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
"""Files taken as frames in a frame folder."""

_EOF_TOLERANCE_FRAMES = 2
"""Frame counts and durations in metadata may overshoot the real stream by a frame or two."""


@dataclass
class Video:
    """Sampled frames of one video and where they come from."""

    frames: np.ndarray
    """uint8 [T, H, W, 3] RGB frames."""
    timestamps: np.ndarray
    """float64 [T] seconds from the start of the video for each frame."""
    indices: np.ndarray
    """int64 [T] native frame indices that were sampled."""
    duration: float
    """Length of the whole video in seconds."""
    source: str
    """The file or folder the frames came from."""


def load_video(
    path: str | os.PathLike,
    config: FrameSamplingConfig | None = None,
    num_frames: int | None = None,
    progress: bool = False,
    strategy: DecodeStrategy = "auto",
) -> Video:
    """Sample frames from a video file or a folder of frame images (see ``sample_frames``)."""
    config = config or FrameSamplingConfig()
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_folder(path, config, num_frames, progress)
    return _load_file(path, config, num_frames, progress, strategy)


def _resize(image: Image.Image, size: int | None) -> np.ndarray:
    image = image.convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image)


def _progress(total: int, enabled: bool, name: str) -> tqdm:
    return tqdm(total=total, disable=not enabled, desc=f"decoding {name}", unit="frame", leave=False)


# Frame folders.


def _natural_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _load_folder(path: Path, config: FrameSamplingConfig, num_frames: int | None, progress: bool) -> Video:
    try:
        names = [entry.name for entry in os.scandir(path) if entry.name.lower().endswith(IMAGE_SUFFIXES)]
    except OSError as error:
        raise VideoError(f"{path}: cannot list frame folder ({error.strerror})") from error
    if not names:
        raise VideoError(f"{path}: folder contains no frame images ({', '.join(IMAGE_SUFFIXES)})")
    names.sort(key=_natural_key)
    duration = len(names) / config.folder_fps
    schedule = sample_frames(duration, config.folder_fps, len(names), config, num_frames, source=str(path))
    frames: np.ndarray | None = None
    with _progress(len(schedule.indices), progress, path.name) as bar:
        for slot, index in enumerate(schedule.indices):
            frame = _read_image(path / names[index], config.size)
            if frames is None:
                frames = np.empty((len(schedule.indices), *frame.shape), np.uint8)
            elif frame.shape != frames.shape[1:]:
                raise VideoError(
                    f"{path / names[index]}: frame is {frame.shape[1]}x{frame.shape[0]} but earlier frames "
                    f"are {frames.shape[2]}x{frames.shape[1]} (set a sampling size to resize)"
                )
            frames[slot] = frame
            bar.update()
    return Video(frames, schedule.timestamps, schedule.indices, duration, str(path))


def _read_image(path: Path, size: int | None) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return _resize(image, size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise VideoError(f"{path}: cannot read frame image ({error})") from error


# Video files.


@dataclass(frozen=True)
class _StreamInfo:
    fps: float
    duration: float
    n_total: int
    start_pts: int
    time_base: float


def _load_file(
    path: Path, config: FrameSamplingConfig, num_frames: int | None, progress: bool, strategy: DecodeStrategy
) -> Video:
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise VideoError(
            f"{path}: cannot open as a video (not a video, or corrupt/truncated: {error.strerror})"
        ) from error
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: file has no video stream, so no decodable frames")
        stream = container.streams.video[0]
        _check_codec(stream, path)
        stream.thread_type = "AUTO"
        info = _stream_info(container, stream, path)
        schedule = sample_frames(info.duration, info.fps, info.n_total, config, num_frames, source=str(path))
        with _progress(len(schedule.indices), progress, path.name) as bar:
            frames, timestamps = _decode_schedule(container, stream, info, schedule, config.size, strategy, bar, path)
    return Video(frames, timestamps, schedule.indices, info.duration, str(path))


def _check_codec(stream: av.VideoStream, path: Path) -> None:
    context = stream.codec_context
    if context is None or context.codec is None:
        tag = stream.codec_tag or "unknown"
        raise VideoError(f"{path}: unsupported video codec ({tag}): FFmpeg has no decoder for it")


def _stream_info(container: av.container.InputContainer, stream: av.VideoStream, path: Path) -> _StreamInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    time_base = float(stream.time_base) if stream.time_base else 0.0
    if fps <= 0 or time_base <= 0:
        raise VideoError(f"{path}: video stream has no usable frame rate or time base")
    if stream.duration:
        duration = stream.duration * time_base
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    n_total = stream.frames or round(duration * fps)
    if n_total <= 0:
        n_total = _count_packets(container, stream, path)
        duration = n_total / fps
    if not duration:
        duration = n_total / fps
    return _StreamInfo(fps, duration, n_total, stream.start_time or 0, time_base)


def _count_packets(container: av.container.InputContainer, stream: av.VideoStream, path: Path) -> int:
    """Count frames by demuxing (no decoding) when the container has no duration or frame count."""
    try:
        count = sum(1 for packet in container.demux(stream) if packet.size)
        container.seek(0, stream=stream)
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: cannot read video packets ({error.strerror})") from error
    return count


class _KeyframeTracker:
    """Learns a lower bound on keyframe spacing while decoding, to decide when seeking pays off.

    A seek lands on the keyframe before the target. It only saves work when that keyframe lies
    after the current decode position, which is likely only when the gap to the next target
    exceeds the keyframe interval. The bound grows with every stretch decoded without a keyframe.
    """

    def __init__(self) -> None:
        self.spacing = 0.0
        self.last_key: float | None = None

    def reset(self) -> None:
        self.last_key = None

    def observe(self, time: float, key_frame: bool) -> None:
        if self.last_key is not None:
            self.spacing = max(self.spacing, time - self.last_key)
        if key_frame or self.last_key is None:
            self.last_key = time


def _decode_schedule(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    info: _StreamInfo,
    schedule: FrameSchedule,
    size: int | None,
    strategy: DecodeStrategy,
    bar: tqdm,
    path: Path,
) -> tuple[np.ndarray, np.ndarray]:
    targets = schedule.timestamps
    frame_time = 1.0 / info.fps
    tolerance = 0.5 * frame_time
    frames: np.ndarray | None = None
    times = np.zeros(len(targets), np.float64)
    tracker = _KeyframeTracker()
    position = -np.inf
    slot = 0
    decoder = None
    last = None
    while slot < len(targets):
        gap = targets[slot] - position
        should_seek = decoder is None or {
            "seek": gap > 1.5 * frame_time,
            "sequential": False,
            "auto": gap > max(tracker.spacing, 3 * frame_time),
        }[strategy]
        if should_seek:
            decoder = _seek(container, stream, info, targets[slot] - tolerance, strategy, path)
            tracker.reset()
        frame = _next_frame(decoder, path)
        if frame is None:
            break
        time = (frame.pts - info.start_pts) * info.time_base if frame.pts is not None else position + frame_time
        position = time
        tracker.observe(time, frame.key_frame)
        last = (frame, time)
        if time < targets[slot] - tolerance:
            continue
        image = _resize(frame.to_image(), size)
        if frames is None:
            frames = np.empty((len(targets), *image.shape), np.uint8)
        while slot < len(targets) and targets[slot] - tolerance <= time:
            frames[slot], times[slot] = image, time
            slot += 1
            bar.update()
    if slot < len(targets):
        _fill_tail(frames, times, slot, targets, last, size, info, path)
    return frames, times


def _seek(container, stream, info: _StreamInfo, time: float, strategy: DecodeStrategy, path: Path):
    """Restart decoding at the keyframe before ``time`` (or at the start, for sequential decoding)."""
    offset = info.start_pts + int(max(time, 0.0) / info.time_base)
    try:
        if strategy != "sequential" and offset > info.start_pts:
            container.seek(offset, stream=stream, backward=True)
        elif strategy != "sequential":
            container.seek(info.start_pts, stream=stream, backward=True)
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: seeking failed at {time:.1f}s ({error.strerror})") from error
    return container.decode(stream)


def _next_frame(decoder, path: Path) -> av.VideoFrame | None:
    try:
        return next(decoder, None)
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: decoding failed (corrupt or unsupported data: {error.strerror})") from error


def _fill_tail(frames, times, slot, targets, last, size, info: _StreamInfo, path: Path) -> None:
    """Targets past the end of the stream: accept a metadata overshoot of a frame or two, else fail."""
    if last is None:
        raise VideoError(f"{path}: video has no decodable frames")
    frame, time = last
    missing = targets[slot]
    if missing - time > _EOF_TOLERANCE_FRAMES / info.fps:
        raise VideoError(
            f"{path}: video ends at {time:.2f}s but its metadata says {info.duration:.2f}s "
            "(truncated or corrupt file)"
        )
    image = _resize(frame.to_image(), size)
    if frames is None:
        frames = np.empty((len(targets), *image.shape), np.uint8)
    frames[slot:], times[slot:] = image, time
