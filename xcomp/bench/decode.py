"""Decode benchmark: sample 64 and 1,024 frames from generated 10-minute and 1-hour 720p H.264 videos.

The video is 1280x720, 25 fps, 90,000 frames, H.264 High profile (x264 ``veryfast``, crf 23,
B-frames, a keyframe every ``--gop`` frames, 2 s by default as in streaming encodes). Encoding
an hour of 720p on 2 cores takes far too long, so one minute of unique content is encoded (a
textured background panning like a camera, moving objects, a frame-number barcode) and its
packets are remuxed 60 times with shifted timestamps. The bitstream, and so the decode cost,
is that of a real encode; only the pictures repeat every minute. The file is cached in the
temp dir.

Each (video, frame count, backend) runs in a fresh process, so the peak RSS (``ru_maxrss``)
reported is that of one ``load_video`` call plus the interpreter and imports (reported
separately). Every sampled frame's barcode is checked against the frame index it should be.
PyAV rows are named by their seeking strategy (``pyav/auto``: seek only when a keyframe is far
enough ahead; ``pyav/sequential``: decode straight through; ``pyav/seek``: seek to every frame).

Run: ``python -m xcomp.bench.decode`` (decord vs PyAV's auto strategy, both videos, 64 and 1,024
frames; ``--backends decord pyav/auto pyav/sequential pyav/seek`` adds PyAV's other strategies;
``--minutes 10`` only the short video).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import av
import numpy as np

from xcomp.video.decode import load_video
from xcomp.video.sampling import FrameSamplingConfig

WIDTH, HEIGHT, FPS = 1280, 720, 25
CLIP_SECONDS = 60
BARCODE_BITS = 11
"""Frame number (mod 2,048 > 1,500 frames per clip) as white/black blocks along the top edge."""
BLOCK = 48


def _barcode(index: int) -> np.ndarray:
    bits = (index >> np.arange(BARCODE_BITS)) & 1
    return np.repeat(bits * 255, BLOCK).astype(np.uint8)


def read_barcode(frame: np.ndarray) -> int:
    """Frame number (mod clip length) drawn by ``_clip_frames``, from a frame of any size."""
    height, width = frame.shape[:2]
    y = int(BLOCK * 0.5 * height / HEIGHT)
    xs = ((np.arange(BARCODE_BITS) + 0.5) * BLOCK * width / WIDTH).astype(int)
    bits = frame[y, xs].mean(axis=1) > 128
    return int((bits.astype(int) << np.arange(BARCODE_BITS)).sum())


def _clip_frames(count: int, seed: int = 0):
    """Camera-like content: a smooth random texture panned across, two moving discs, a barcode."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (HEIGHT // 16 + 2, WIDTH // 8 + 2, 3), dtype=np.uint8)
    texture = np.kron(coarse, np.ones((32, 32, 1), np.uint8))
    texture = (texture.astype(np.uint16) + rng.integers(0, 40, texture.shape, dtype=np.uint16)).clip(0, 255)
    texture = texture.astype(np.uint8)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for index in range(count):
        x0 = int((np.sin(index / 200) + 1) * (texture.shape[1] - WIDTH) / 2)
        y0 = int((np.cos(index / 300) + 1) * (texture.shape[0] - HEIGHT) / 2)
        frame = texture[y0 : y0 + HEIGHT, x0 : x0 + WIDTH].copy()
        for k, colour in enumerate(((230, 30, 30), (30, 90, 230))):
            cx = WIDTH / 2 + (WIDTH / 3) * np.sin(index / (40 + 17 * k))
            cy = HEIGHT / 2 + (HEIGHT / 3) * np.cos(index / (55 + 9 * k))
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < 90**2] = colour
        frame[:BLOCK, : BARCODE_BITS * BLOCK] = _barcode(index)[None, :, None]
        yield frame


def _encode_clip(path: Path, gop: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(gop), "keyint_min": str(gop)}
        for frame in _clip_frames(CLIP_SECONDS * FPS):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _repeat_clip(clip: Path, path: Path, repeats: int) -> None:
    """Concatenate ``repeats`` copies of the clip by remuxing its packets with shifted timestamps."""
    with av.open(str(clip)) as source:
        stream_in = source.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in source.demux(stream_in) if p.size]
        time_base = stream_in.time_base
        period = round(CLIP_SECONDS / time_base)
        with av.open(str(path), "w") as container:
            stream_out = container.add_stream_from_template(stream_in)
            for repeat in range(repeats):
                for data, pts, dts, key in packets:
                    packet = av.Packet(data)
                    packet.pts, packet.dts = pts + repeat * period, dts + repeat * period
                    packet.time_base, packet.stream, packet.is_keyframe = time_base, stream_out, key
                    container.mux(packet)


def make_long_video(minutes: int, gop: int, directory: Path | None = None) -> Path:
    """Create (or reuse) the cached ``minutes``-long 720p test video and return its path."""
    directory = directory or Path(tempfile.gettempdir()) / "xcomp-bench"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"synthetic_{minutes}min_720p{FPS}_gop{gop}.mp4"
    if not path.exists():
        clip = directory / f"clip_720p{FPS}_gop{gop}.mp4"
        if not clip.exists():
            _encode_clip(clip.with_suffix(".part.mp4"), gop)
            clip.with_suffix(".part.mp4").rename(clip)
        _repeat_clip(clip, path.with_suffix(".part.mp4"), minutes * 60 // CLIP_SECONDS)
        path.with_suffix(".part.mp4").rename(path)
    return path


def _measure(path: str, backend: str, frames: int, size: int) -> dict:
    """One timed ``load_video`` call (run in a fresh process for a clean peak RSS)."""
    config = FrameSamplingConfig(min_frames=frames, max_frames=frames, size=size)
    library, _, strategy = backend.partition("/")
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    video = load_video(path, config, strategy=strategy or "auto", backend=library)
    seconds = time.perf_counter() - start
    clip_frames = CLIP_SECONDS * FPS
    wrong = sum(read_barcode(f) != i % clip_frames for f, i in zip(video.frames, video.indices))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "backend": backend,
        "frames": len(video.frames),
        "seconds": seconds,
        "base_mib": base_kib / 1024,
        "peak_mib": peak_kib / 1024,
        "output_mib": video.frames.nbytes / 2**20,
        "wrong": wrong,
    }


BACKENDS = ("decord", "pyav/auto", "pyav/sequential", "pyav/seek")
"""Rows the benchmark can measure: decord, or PyAV with one of its seeking strategies."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, nargs="+", default=[10, 60], help="video lengths in minutes")
    parser.add_argument("--gop", type=int, default=50, help="keyframe interval in frames")
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 1024], help="frame counts to sample")
    parser.add_argument("--size", type=int, default=448, help="output frame side")
    parser.add_argument("--backends", nargs="+", default=["decord", "pyav/auto"], choices=BACKENDS)
    args = parser.parse_args(argv)
    print("RSS in MiB: before decoding (interpreter + imports), peak, and the returned frames array")
    header = f"{'video':<8}{'backend':<17}{'frames':>7}{'seconds':>9}{'frames/s':>10}"
    print(header + f"{'RSS before':>11}{'peak':>7}{'output':>8}{'wrong':>7}")
    for minutes in args.minutes:
        start = time.perf_counter()
        path = make_long_video(minutes, args.gop)
        size_mib = path.stat().st_size / 2**20
        print(f"# {path} ({size_mib:.0f} MiB, ready in {time.perf_counter() - start:.0f}s)", flush=True)
        for frames in args.frames:
            for backend in args.backends:
                with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                    row = pool.submit(_measure, str(path), backend, frames, args.size).result()
                print(
                    f"{f'{minutes} min':<8}{backend:<17}{row['frames']:>7}{row['seconds']:>9.1f}"
                    f"{row['frames'] / row['seconds']:>10.1f}{row['base_mib']:>11.0f}{row['peak_mib']:>7.0f}"
                    f"{row['output_mib']:>8.0f}{row['wrong']:>7}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
