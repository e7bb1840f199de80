"""Frame sampling rule, decoding of real files and frame folders, and every bad input made for real."""

from __future__ import annotations

import resource
import struct
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.conftest import require_decord
from xcomp.errors import ConfigError, VideoError
from xcomp.video import decode
from xcomp.video.decode import load_video
from xcomp.video.sampling import FrameSamplingConfig, sample_frames, target_frame_count

SIDE = 64
BITS = 8
"""Frame index drawn as 8 black/white blocks of 8x16 px along the top of a 64x64 frame."""


def barcode_frame(index: int) -> np.ndarray:
    frame = np.full((SIDE, SIDE, 3), 90, np.uint8)
    for bit in range(BITS):
        frame[:16, bit * 8 : bit * 8 + 8] = 255 if (index >> bit) & 1 else 0
    return frame


def read_barcode(frame: np.ndarray) -> int:
    scale = frame.shape[1] / SIDE
    values = [frame[int(8 * scale), int((bit * 8 + 4) * scale)].mean() for bit in range(BITS)]
    return sum(1 << bit for bit, value in enumerate(values) if value > 128)


def write_video(path: Path, count: int, fps: int = 4, codec: str = "libx264", gop: int = 8, **container_options):
    with av.open(str(path), "w", container_options=container_options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(gop)} if codec != "libvpx-vp9" else {"g": str(gop), "deadline": "realtime"}
        for index in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(barcode_frame(index), format="rgb24")))
        container.mux(stream.encode())
    return path


def write_raw_stream(path: Path, count: int = 40) -> Path:
    """A raw H.264 elementary stream: no container, so no timestamps, duration or index."""
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        for index in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(barcode_frame(index), format="rgb24")))
        container.mux(stream.encode())
    return path


def small_config(**overrides) -> FrameSamplingConfig:
    return FrameSamplingConfig(**{"min_frames": 4, "max_frames": 64, "size": None, **overrides})


@pytest.fixture(params=["pyav", "decord"])
def backend(request) -> str:
    """Each file-decoding test runs on both backends (CI installs the decord extra)."""
    if request.param == "decord":
        require_decord()
    return request.param


def assert_one_line_error(excinfo: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    assert path.name in message
    for word in words:
        assert word in message, message


# Sampling rule.


def test_count_follows_fps_and_bounds():
    config = FrameSamplingConfig()
    assert target_frame_count(3600, config) == 1024  # 1 fps capped at the upper bound
    assert target_frame_count(30, config) == 64  # raised to the lower bound
    assert target_frame_count(101, config) == 100  # rounded down to a multiple of 4
    assert target_frame_count(300, FrameSamplingConfig(fps=0.5, multiple_of=8)) == 144


def test_indices_are_segment_centres_with_timestamps():
    schedule = sample_frames(100.0, 1.0, 100, small_config(max_frames=4, min_frames=4))
    assert schedule.indices.tolist() == [12, 37, 62, 87]
    schedule = sample_frames(20.0, 25.0, 500, small_config())
    assert len(schedule.indices) == 20
    assert np.all(np.diff(schedule.indices) == 25)
    np.testing.assert_allclose(schedule.timestamps, schedule.indices / 25.0)


def test_short_video_takes_every_frame_rounded_to_group():
    schedule = sample_frames(10.0, 1.0, 10, FrameSamplingConfig())
    assert len(schedule.indices) == 8 and len(set(schedule.indices.tolist())) == 8
    tiny = sample_frames(3.0, 1.0, 3, FrameSamplingConfig())
    assert tiny.indices.tolist() == [0, 1, 1, 2]  # one group, padded by repetition


def test_explicit_request_larger_than_video():
    with pytest.raises(VideoError, match="100 frames requested but the video has only 40"):
        sample_frames(10.0, 4.0, 40, FrameSamplingConfig(), num_frames=100, source="clip.mp4")
    repeated = sample_frames(10.0, 4.0, 40, FrameSamplingConfig(allow_repeat=True), num_frames=100)
    assert len(repeated.indices) == 100 and repeated.indices.max() == 39


def test_invalid_sampling_config():
    with pytest.raises(ConfigError):
        FrameSamplingConfig(min_frames=128, max_frames=64)
    with pytest.raises(ConfigError):
        FrameSamplingConfig(fps=0)
    with pytest.raises(VideoError, match="no decodable frames"):
        sample_frames(0.0, 25.0, 0, FrameSamplingConfig())


# Decoding real files.


@pytest.mark.parametrize(
    ("suffix", "codec"), [("mp4", "libx264"), ("mkv", "libx264"), ("webm", "libvpx-vp9"), ("avi", "mpeg4")]
)
def test_decodes_the_sampled_frames(tmp_path, suffix, codec, backend):
    path = write_video(tmp_path / f"clip.{suffix}", 40, codec=codec)
    video = load_video(path, small_config(), backend=backend)
    assert len(video.frames) == 8  # 10 s at 1 fps, rounded down to a multiple of 4
    assert video.frames.dtype == np.uint8 and video.frames.shape[1:] == (SIDE, SIDE, 3)
    assert [read_barcode(f) for f in video.frames] == video.indices.tolist()
    np.testing.assert_allclose(video.timestamps, video.indices / 4.0, atol=1e-3)
    assert video.duration == pytest.approx(10.0, abs=0.3)


@pytest.mark.parametrize("strategy", ["auto", "seek", "sequential"])
def test_strategies_agree(tmp_path, strategy):
    path = write_video(tmp_path / "long.mp4", 240, fps=8, gop=12)
    video = load_video(path, small_config(), num_frames=6, strategy=strategy, backend="pyav")
    assert [read_barcode(f) for f in video.frames] == video.indices.tolist()


def test_auto_seeks_only_when_frames_are_far_apart(tmp_path, monkeypatch):
    calls = []
    real_seek = decode._seek
    monkeypatch.setattr(decode, "_seek", lambda *args: calls.append(args[3]) or real_seek(*args))
    path = write_video(tmp_path / "long.mp4", 480, fps=8, gop=12)
    load_video(path, small_config(), num_frames=8, backend="pyav")  # 60 apart, keyframes every 12: seek each
    assert len(calls) == 8
    calls.clear()
    load_video(path, small_config(max_frames=256), num_frames=160, backend="pyav")  # 3 apart: decode forward
    assert len(calls) == 1


def test_raw_stream_without_index_or_duration(tmp_path):
    """A raw H.264 elementary stream has no timestamps, duration or index: frames are counted."""
    path = write_raw_stream(tmp_path / "clip.h264")
    video = load_video(path, small_config(), num_frames=8)
    assert [read_barcode(f) for f in video.frames] == video.indices.tolist()
    assert np.all(np.diff(video.timestamps) > 0)


def test_backends_take_the_same_frames_and_pixels(tmp_path):
    """Same indices and timestamps; pixels within 1 level (both convert YUV with FFmpeg, resize with PIL)."""
    require_decord()
    path = write_video(tmp_path / "long.mp4", 240, fps=8, gop=12)
    for count, size in ((6, None), (40, 48)):
        pyav = load_video(path, small_config(size=size), num_frames=count, backend="pyav")
        decord = load_video(path, small_config(size=size), num_frames=count, backend="decord")
        np.testing.assert_array_equal(decord.indices, pyav.indices)
        np.testing.assert_allclose(decord.timestamps, pyav.timestamps, atol=1e-6)
        assert decord.duration == pyav.duration
        assert np.abs(decord.frames.astype(int) - pyav.frames.astype(int)).max() <= 1


def test_auto_backend_is_pyav(tmp_path, monkeypatch):
    """decord measured slower everywhere on 720p (and wrong on the 1-hour video): auto never picks it."""
    require_decord()
    used = []
    real = decode.decord_reader.read_frames
    monkeypatch.setattr(decode.decord_reader, "read_frames", lambda *args: used.append(1) or real(*args))
    path = write_video(tmp_path / "long.mp4", 480, fps=8, gop=12)
    load_video(path, small_config(), num_frames=8, backend="decord")
    assert used == [1]
    load_video(path, small_config(), num_frames=8)
    load_video(path, small_config(max_frames=512), num_frames=480)
    assert used == [1]


def test_raw_stream_under_decord_is_one_line(tmp_path):
    require_decord()
    path = write_raw_stream(tmp_path / "clip.h264")
    with pytest.raises(VideoError) as excinfo:
        load_video(path, small_config(), num_frames=8, backend="decord")
    assert_one_line_error(excinfo, path, "decord cannot decode this file", "pyav")


def test_unknown_backend(tmp_path):
    with pytest.raises(ConfigError, match="unknown video backend 'opencv'"):
        load_video(write_video(tmp_path / "clip.mp4", 8), backend="opencv")


def test_decord_backend_without_decord_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(decode.decord_reader, "available", lambda: False)
    with pytest.raises(ConfigError, match=r'not installed: pip install -e "\.\[decord\]"'):
        load_video(write_video(tmp_path / "clip.mp4", 8), backend="decord")


def test_resizes_to_square(tmp_path, backend):
    path = write_video(tmp_path / "clip.mp4", 40)
    video = load_video(path, small_config(size=48), num_frames=5, progress=True, backend=backend)
    assert video.frames.shape == (5, 48, 48, 3)
    assert [read_barcode(f) for f in video.frames] == video.indices.tolist()


def write_frame_folder(folder: Path, count: int, suffix: str = ".png") -> Path:
    folder.mkdir()
    for index in range(count):  # unpadded names: sorting must be natural, not lexicographic
        Image.fromarray(barcode_frame(index)).save(folder / f"frame_{index}{suffix}", quality=95)
    return folder


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_frame_folder(tmp_path, suffix):
    folder = write_frame_folder(tmp_path / "frames", 24, suffix)
    video = load_video(folder, small_config(folder_fps=2.0))
    assert len(video.frames) == 12 and video.duration == 12.0
    assert [read_barcode(f) for f in video.frames] == video.indices.tolist()
    np.testing.assert_allclose(video.timestamps, video.indices / 2.0)


# Bad inputs, each made for real.


def test_missing_path(tmp_path, backend):
    with pytest.raises(VideoError) as excinfo:
        load_video(tmp_path / "nothing.mp4", backend=backend)
    assert_one_line_error(excinfo, tmp_path / "nothing.mp4", "no such file")


def test_text_file_named_mp4(tmp_path, backend):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n")
    with pytest.raises(VideoError) as excinfo:
        load_video(path, backend=backend)
    assert_one_line_error(excinfo, path, "cannot open as a video")


def test_truncated_mp4_without_index(tmp_path, backend):
    full = write_video(tmp_path / "full.mp4", 64).read_bytes()  # index (moov) written at the end
    path = tmp_path / "half.mp4"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(VideoError) as excinfo:
        load_video(path, small_config(), backend=backend)
    assert_one_line_error(excinfo, path, "corrupt/truncated")


def test_truncated_mp4_with_index_first(tmp_path, backend):
    full = write_video(tmp_path / "full.mp4", 64, movflags="+faststart").read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(VideoError) as excinfo:
        load_video(path, small_config(), backend=backend)
    assert_one_line_error(excinfo, path, "corrupt")  # "ends at ..." or "decoding failed ...", by cut point


def test_audio_only_file(tmp_path, backend):
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        tone = np.sin(np.arange(16000, dtype=np.float32) * 0.2)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoError) as excinfo:
        load_video(path, backend=backend)
    assert_one_line_error(excinfo, path, "no video stream")


def test_video_stream_without_frame_data(tmp_path, backend):
    data = write_video(tmp_path / "full.mp4", 16, movflags="+faststart").read_bytes()
    offset = 0
    while data[offset + 4 : offset + 8] != b"mdat":  # walk the top-level boxes to the media data
        offset += struct.unpack(">I", data[offset : offset + 4])[0]
    path = tmp_path / "empty.mp4"
    path.write_bytes(data[: offset + 8])  # valid header listing 16 frames, no frame bytes
    with pytest.raises(VideoError) as excinfo:
        load_video(path, small_config(), backend=backend)
    assert_one_line_error(excinfo, path, "no decodable frames")


def test_fewer_frames_than_requested(tmp_path, backend):
    path = write_video(tmp_path / "short.mp4", 20)
    with pytest.raises(VideoError) as excinfo:
        load_video(path, small_config(), num_frames=32, backend=backend)
    assert_one_line_error(excinfo, path, "32 frames requested", "only 20")
    assert len(load_video(path, small_config(allow_repeat=True), num_frames=32, backend=backend).frames) == 32


def test_unsupported_codec(tmp_path, backend):
    mpeg4 = write_video(tmp_path / "mpeg4.avi", 16, codec="mpeg4").read_bytes()
    path = tmp_path / "unknown.avi"
    path.write_bytes(mpeg4.replace(b"FMP4", b"XQZ1"))  # a FourCC no decoder knows
    with pytest.raises(VideoError) as excinfo:
        load_video(path, backend=backend)
    assert_one_line_error(excinfo, path, "unsupported video codec")


def test_empty_frame_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(VideoError) as excinfo:
        load_video(folder)
    assert_one_line_error(excinfo, folder, "no frame images")


def test_corrupt_image_in_frame_folder(tmp_path):
    folder = write_frame_folder(tmp_path / "frames", 4)
    png = (folder / "frame_2.png").read_bytes()
    (folder / "frame_2.png").write_bytes(png[: len(png) // 3])
    (folder / "frame_3.png").write_bytes(b"not a png at all")
    with pytest.raises(VideoError) as excinfo:
        load_video(folder, small_config(), num_frames=4)
    message = str(excinfo.value)
    assert "\n" not in message and "cannot read frame image" in message and "frame_2.png" in message


def test_frame_folder_with_mixed_sizes(tmp_path):
    folder = write_frame_folder(tmp_path / "frames", 4)
    Image.new("RGB", (32, 16)).save(folder / "frame_3.png")
    with pytest.raises(VideoError) as excinfo:
        load_video(folder, small_config(), num_frames=4)
    assert "frame_3.png" in str(excinfo.value)
    assert load_video(folder, small_config(size=16), num_frames=4).frames.shape == (4, 16, 16, 3)


@pytest.mark.slow
def test_hour_long_video_memory_bound():
    """1,024 frames from a 1-hour 720p video: peak RSS grows by the output array plus < 200 MiB."""
    from xcomp.bench.decode import CLIP_SECONDS, FPS, make_long_video
    from xcomp.bench.decode import read_barcode as read_bench_barcode

    path = make_long_video(60, 50)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    video = load_video(path, FrameSamplingConfig())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert len(video.frames) == 1024
    assert peak - before < video.frames.nbytes / 2**20 + 200
    assert all(read_bench_barcode(f) == i % (CLIP_SECONDS * FPS) for f, i in zip(video.frames, video.indices))
