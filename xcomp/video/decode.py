"""Decode sampled frames from a video file or a folder of frame images.

Two backends read video files, chosen by ``backend`` (``video.backend`` in a job's config,
``--video-backend`` on ``xcomp ask`` / ``demo``):

* ``pyav``: PyAV 18 (FFmpeg inside the wheel; wheels for x86-64 and aarch64 Linux, macOS,
  Windows), always installed. Seeks to keyframes only where that beats decoding forward
  (``DecodeStrategy``), reads raw streams without an index or timestamps by decoding forward.
* ``decord``: the ``decord2`` fork of decord (optional extra, ``xcomp.video.decord_reader``), what
  LLaVA / VideoChat-Flash code decodes with.
* ``auto``: PyAV. Measured side by side (``xcomp.bench.decode``, docs/benchmarks.md), decord was
  slower in every case on 720p (64 and 1,024 frames of 10-minute and 1-hour videos: 1.3-1.6x PyAV's
  time), held 1.8x the memory, and on the 1-hour video returned wrong frames (6 of 64, 337 of 1,024,
  with only a warning on stderr); on a 360p video with 10-second GOPs it was 10 % faster. Nothing
  measured makes it the better default, so ``auto`` picks it nowhere until a measurement does.

Both take the same frames: the container is probed and the schedule drawn with PyAV either way, and
frames are resized by the same PIL bicubic. When decord fails on a file, PyAV decodes it to name what
is wrong, so the one-line errors are the same; a file only decord fails on is an error that says
PyAV can decode it. Frame folders are read with PIL whatever the
backend.

torchcodec 0.17 from PyPI does not import with the CPU build of torch (its image library needs
CUDA's libnvrtc), so it is not a backend.

Memory stays bounded: each wanted frame is converted and resized as soon as it is decoded and
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

from xcomp.errors import ConfigError, VideoError
from xcomp.video import decord_reader
from xcomp.video.sampling import FrameSamplingConfig, FrameSchedule, sample_frames

DecodeStrategy = Literal["auto", "seek", "sequential"]
"""auto: seek only when a keyframe is likely between the current position and the next wanted frame;
seek: seek before every wanted frame that is not the next one; sequential: never seek."""

VideoBackend = Literal["auto", "pyav", "decord"]
"""Which library decodes video files (see the module docstring)."""

BACKENDS = ("auto", "pyav", "decord")
"""The values of ``VideoBackend``."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
"""Files taken as frames in a frame folder."""

_EOF_TOLERANCE_FRAMES = 2
"""Frame counts and durations in metadata may overshoot the real stream by a frame or two."""

_SEEK_COST_FRAMES = 24
"""A seek (decoder flush, keyframe decode, threads re-primed) costs about this many frames of
sequential decoding: measured break-even on 720p H.264 with 2-second GOPs."""


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
    backend: VideoBackend = "auto",
) -> Video:
    """Sample frames from a video file or a folder of frame images (see ``sample_frames``).

    ``strategy`` is PyAV's seeking policy; ``backend`` picks the library that decodes files."""
    config = config or FrameSamplingConfig()
    check_backend(backend)
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_folder(path, config, num_frames, progress)
    return _load_file(path, config, num_frames, progress, strategy, backend)


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, or decord where it is not installed, in one line."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown video backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "decord" and not decord_reader.available():
        raise ConfigError('video backend "decord" is not installed: pip install -e ".[decord]" (decord2)')


def _square(array: np.ndarray, size: int | None) -> np.ndarray:
    """Resize an RGB array to size x size with PIL bicubic, as the model's image processor does."""
    if size is None or array.shape[:2] == (size, size):
        return array
    return np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BICUBIC))


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
            frame = read_image(path / names[index], config.size)
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


def read_image(path: Path, size: int | None) -> np.ndarray:
    """An image file as uint8 [size, size, 3] RGB (PIL bicubic; size None keeps it), or one-line `VideoError`."""
    try:
        with Image.open(path) as image:
            return _square(np.asarray(image.convert("RGB")), size)
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
    seekable: bool
    """False for streams without duration or frame count (raw elementary streams): decode forward."""


def _load_file(
    path: Path,
    config: FrameSamplingConfig,
    num_frames: int | None,
    progress: bool,
    strategy: DecodeStrategy,
    backend: VideoBackend,
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
            sink = _FrameSink(len(schedule.indices), config.size, bar)
            if backend == "decord":
                _decode_with_decord(container, stream, info, schedule, sink, strategy, path)
            else:
                _decode_schedule(container, stream, info, schedule, sink, strategy, path)
    return Video(sink.frames, sink.times, schedule.indices, info.duration, str(path))


def _decode_with_decord(container, stream, info, schedule, sink, strategy, path: Path) -> None:
    """decord reads the schedule; where it fails, PyAV decodes the file to name the fault."""
    try:
        decord_reader.read_frames(path, schedule.indices, lambda slot, rgb, time: sink.store(slot, slot + 1, rgb, time))
    except decord_reader.DecordFailure as failure:
        sink.reset()
        _decode_schedule(container, stream, info, schedule, sink, strategy, path)
        raise VideoError(f"{path}: decord cannot decode this file ({failure}); video backend pyav can") from failure


def _check_codec(stream: av.VideoStream, path: Path) -> None:
    if stream.codec_context is None:
        raise VideoError(f"{path}: unsupported video codec (FFmpeg has no decoder for this stream)")


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
    seekable = n_total > 0
    if not seekable:
        n_total = _count_packets(path, stream.index)
    if not duration:
        duration = n_total / fps
    return _StreamInfo(fps, duration, n_total, stream.start_time or 0, time_base, seekable)


def _count_packets(path: Path, stream_index: int) -> int:
    """Count frames by demuxing (no decoding) when the container has no duration or frame count.

    A second handle is used because such containers (raw elementary streams) often cannot seek back.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[stream_index]
            return sum(1 for packet in container.demux(stream) if packet.size)
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: cannot read video packets ({error.strerror})") from error


class _SeekPolicy:
    """Decides, once per wanted frame, whether to seek to it or to keep decoding forward.

    A seek restarts decoding at the keyframe before the target, so it only pays off when that
    keyframe lies well after the current position (a seek also flushes the decoder, which costs
    about ``_SEEK_COST_FRAMES`` frames of decoding on the dev machine). The container index (mp4
    sample table, mkv cues, avi idx1) gives the keyframe times; without one, a lower bound on the
    keyframe spacing is learnt while decoding.
    """

    def __init__(self, strategy: DecodeStrategy, keyframes: np.ndarray | None, frame_time: float) -> None:
        self.strategy, self.keyframes, self.frame_time = strategy, keyframes, frame_time
        self.spacing = 0.0
        self.last_key: float | None = None

    def should_seek(self, target: float, position: float) -> bool:
        if self.strategy == "sequential":
            return False
        if position == -np.inf:
            return target > 0
        gap = target - position
        if self.strategy == "seek":
            return gap > 1.5 * self.frame_time
        skip = _SEEK_COST_FRAMES * self.frame_time
        if self.keyframes is not None:
            before = np.searchsorted(self.keyframes, target + 0.5 * self.frame_time, side="right") - 1
            return before >= 0 and self.keyframes[before] - position > skip
        return gap > max(self.spacing, skip)

    def seeked(self) -> None:
        self.last_key = None

    def observe(self, time: float, key_frame: bool) -> None:
        """Grow the keyframe-spacing bound with every stretch decoded since the last keyframe."""
        if self.last_key is not None:
            self.spacing = max(self.spacing, time - self.last_key)
        if key_frame or self.last_key is None:
            self.last_key = time


def _keyframe_times(stream: av.VideoStream, info: _StreamInfo) -> np.ndarray | None:
    """Keyframe times (s) from the container index, or None when the container has no index."""
    times = [entry.timestamp for entry in stream.index_entries if entry.is_keyframe]
    if not times:
        return None
    return np.sort((np.array(times, np.float64) - info.start_pts) * info.time_base)


class _FrameSink:
    """Output frames, allocated on the first stored frame (its shape depends on ``size``)."""

    def __init__(self, count: int, size: int | None, bar: tqdm) -> None:
        self.count, self.size, self.bar = count, size, bar
        self.frames: np.ndarray | None = None
        self.times = np.zeros(count, np.float64)

    def store(self, start: int, stop: int, rgb: np.ndarray, time: float) -> None:
        image = _square(rgb, self.size)
        if self.frames is None:
            self.frames = np.empty((self.count, *image.shape), np.uint8)
        self.frames[start:stop], self.times[start:stop] = image, time
        self.bar.update(stop - start)

    def reset(self) -> None:
        """Start over (a backend gave up part way)."""
        self.bar.reset()


def _decode_schedule(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    info: _StreamInfo,
    schedule: FrameSchedule,
    sink: _FrameSink,
    strategy: DecodeStrategy,
    path: Path,
) -> None:
    """Fill ``sink`` with the first frame at or after each target time, seeking per ``strategy``."""
    targets = schedule.timestamps
    frame_time = 1.0 / info.fps
    tolerance = 0.5 * frame_time
    strategy = strategy if info.seekable else "sequential"
    policy = _SeekPolicy(strategy, _keyframe_times(stream, info) if strategy == "auto" else None, frame_time)
    position = -np.inf
    slot, decided = 0, -1
    decoder = None
    last = None
    while slot < len(targets):
        if slot != decided:
            decided = slot
            if policy.should_seek(targets[slot], position):
                _seek(container, stream, info, targets[slot] - tolerance, path)
                decoder = None
                policy.seeked()
        if decoder is None:
            decoder = container.decode(stream)
        frame = _next_frame(decoder, path, position)
        if frame is None:
            break
        if frame.pts is not None:
            time = (frame.pts - info.start_pts) * info.time_base
        else:  # streams without timestamps are decoded from the start: count frames
            time = position + frame_time if position > -np.inf else 0.0
        position = time
        policy.observe(time, frame.key_frame)
        last = (frame, time)
        stop = slot
        while stop < len(targets) and targets[stop] - tolerance <= time:
            stop += 1
        if stop > slot:
            sink.store(slot, stop, _rgb(frame), time)
            slot = stop
    if slot < len(targets):
        _fill_tail(sink, slot, targets, last, info, path)


def _seek(container, stream: av.VideoStream, info: _StreamInfo, time: float, path: Path) -> None:
    """Move the demuxer to the keyframe at or before ``time`` (seconds from the start)."""
    try:
        container.seek(info.start_pts + int(max(time, 0.0) / info.time_base), stream=stream, backward=True)
    except av.error.FFmpegError as error:
        raise VideoError(f"{path}: seeking to {time:.2f}s failed ({error.strerror})") from error


def _next_frame(decoder, path: Path, position: float) -> av.VideoFrame | None:
    try:
        return next(decoder, None)
    except av.error.FFmpegError as error:
        where = "at the start" if position == -np.inf else f"after {position:.2f}s"
        raise VideoError(f"{path}: decoding failed {where} (corrupt or truncated data: {error.strerror})") from error


def _fill_tail(sink: _FrameSink, slot: int, targets: np.ndarray, last, info: _StreamInfo, path: Path) -> None:
    """Targets past the end of the stream: accept a metadata overshoot of a frame or two, else fail."""
    if last is None:
        raise VideoError(f"{path}: video has no decodable frames")
    frame, time = last
    if targets[-1] - time > _EOF_TOLERANCE_FRAMES / info.fps:
        raise VideoError(
            f"{path}: video ends at {time:.2f}s but its metadata says {info.duration:.2f}s (truncated or corrupt file)"
        )
    sink.store(slot, len(targets), _rgb(frame), time)


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")  # ~30x faster than to_image()
