"""Generate synthetic long-video QA cases in memory, or write them as mp4/frame folders + JSONL.

Every case has its own random generator, seeded by ``(seed, family, index)``: a case is the same
whatever ``n`` is and whichever other families are generated, so suites can be extended and cases
regenerated one at a time. The JSONL format is documented in docs/synthetic_suite.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from tqdm import tqdm

from xcomp.errors import ConfigError, XCompError
from xcomp.synth.families import FAMILY_CODES, LETTERS, PLANNERS
from xcomp.synth.follow_up import follow_ups
from xcomp.synth.scene import render

FAMILIES = tuple(PLANNERS)
"""Family names in the order ``all`` generates them."""
BT601, LIMITED_RANGE = 6, 1
"""FFmpeg's AVCOL_*_SMPTE170M and AVCOL_RANGE_MPEG: how the mp4 tags the colours written by ``yuv420p``."""


@dataclass(frozen=True)
class SynthParams:
    """Size and difficulty of generated videos."""

    frames: int = 256
    """Frames per video."""
    size: int = 224
    """Frame side in pixels (square, even for H.264 4:2:0)."""
    fps: float = 1.0
    """Frame rate written to the video; timestamps are index / fps."""
    noise: float = 0.3
    """Distractor level 0-1: clutter shapes, decoy objects and pixel noise."""
    span: int = 4
    """Frames each event stays visible."""

    def __post_init__(self) -> None:
        if self.span < 1:
            raise ConfigError(f"span must be >= 1 frame, got {self.span}")
        if self.frames < max(16, self.span):
            raise ConfigError(f"frames must be >= max(16, span) = {max(16, self.span)}, got {self.frames}")
        if self.size < 32 or self.size % 2:
            raise ConfigError(f"size must be an even number >= 32, got {self.size}")
        if not self.fps > 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")
        if not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"noise must be in [0, 1], got {self.noise}")


@dataclass
class SynthCase:
    """One generated case: its frames and its JSONL record (``video`` is set when written)."""

    frames: np.ndarray
    """uint8 [frames, size, size, 3] RGB."""
    record: dict


def case_id(family: str, index: int) -> str:
    return f"{family}_{index:05d}"


def min_frames(family: str, span: int) -> int:
    """Shortest video a family can be drawn in: 'order' spreads three events over thirds, each with a margin
    of half a span on both sides; 'count' and 'locate' need a quarter of the video to hold one event; a
    needle may last the whole video."""
    if family == "order":
        return 3 * (span + 2 * ((span + 1) // 2))
    if family == "needle":
        return max(16, span)
    return max(16, 4 * span)


def make_case(
    family: str,
    index: int = 0,
    seed: int = 0,
    params: SynthParams | None = None,
    depth: float | None = None,
    render_frames: bool = True,
) -> SynthCase:
    """Generate one case in memory. ``depth`` (0-1) places the needle; None draws it at random.

    ``render_frames=False`` returns the record only (frames empty): the text of a case does not depend on
    its pixels, and drawing them is most of the cost.
    """
    params = params or SynthParams()
    if family not in PLANNERS:
        raise ConfigError(f"unknown family {family!r} (choose from {', '.join(FAMILIES)})")
    if seed < 0 or index < 0:
        raise ConfigError(f"seed and index must be >= 0, got {seed}, {index}")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ConfigError(f"depth must be in [0, 1], got {depth}")
    if params.frames < min_frames(family, params.span):
        raise ConfigError(
            f"{family} questions need >= {min_frames(family, params.span)} frames at span {params.span}, "
            f"got {params.frames}"
        )
    rng = np.random.default_rng([seed, FAMILY_CODES[family], index])
    plan = PLANNERS[family](rng, params.frames, params.span, depth)
    if render_frames:
        frames = render(plan, rng, params.frames, params.size, params.span, params.noise)
    else:
        frames = np.zeros((0, params.size, params.size, 3), np.uint8)
    events = []
    for event in plan.events:
        entry = {"object": event.obj.name, "start": event.start, "end": event.end}
        if event.obj.digit is not None:
            entry["digit"] = event.obj.digit
        events.append(entry)
    record = {
        "id": case_id(family, index),
        "video": None,
        "question": plan.question,
        "options": list(plan.options),
        "answer": LETTERS[plan.answer],
        "answer_text": plan.options[plan.answer],
        "family": family,
        "depth": round(plan.depth, 4),
        "span": params.span,
        "num_frames": params.frames,
        "fps": params.fps,
        "seed": seed,
        "index": index,
        "size": params.size,
        "noise": params.noise,
        "events": events,
    }
    return SynthCase(frames, record)


def iter_cases(
    families: str | list[str],
    n: int,
    seed: int = 0,
    params: SynthParams | None = None,
    depth: float | None = None,
) -> Iterator[SynthCase]:
    """``n`` cases of each family (``"all"`` for every family), generated lazily."""
    names = list(FAMILIES) if families == "all" else [families] if isinstance(families, str) else families
    for family in names:
        for index in range(n):
            yield make_case(family, index, seed, params, depth)


def yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range 4:2:0 planes ([H * 3/2, W] uint8) from RGB, in exact integer math.

    Converting here rather than in swscale keeps the encoder input independent of swscale's
    version and SIMD code paths.
    """
    r, g, b = (rgb[..., k].astype(np.int32) for k in range(3))
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128
    v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128
    u, v = ((c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2] + 2) >> 2 for c in (u, v))
    height, width = y.shape
    planes = [y.ravel(), u.ravel(), v.ravel()]
    return np.concatenate(planes).reshape(height * 3 // 2, width).clip(0, 255).astype(np.uint8)


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """H.264 (yuv420p BT.601, crf 20) mp4 whose bytes depend only on the frames.

    x264's output depends on its thread count, so one thread; its macroblock-tree rate control
    (mbtree) made the first frame differ now and then between encodes in one long-lived process
    (seen in the test suite), so it is off.
    """
    with av.open(
        str(path), "w", container_options={"fflags": "+bitexact", "movflags": "+faststart"}
    ) as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = BT601
        context.color_range = LIMITED_RANGE
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(yuv420p(frame), format="yuv420p")
            picture.pts, picture.time_base = index, 1 / rate
            container.mux(stream.encode(picture))
        container.mux(stream.encode())


def write_frames(directory: Path, frames: np.ndarray) -> None:
    """One PNG per frame, ``frame_00000.png`` onwards (readable by ``load_video`` as a frame folder)."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(directory / f"frame_{index:05d}.png")


def write_suite(
    outdir: str | Path,
    families: str | list[str],
    n: int,
    seed: int = 0,
    params: SynthParams | None = None,
    fmt: str = "mp4",
    depth: float | None = None,
    progress: bool = False,
    questions_per_video: int = 1,
) -> Path:
    """Write videos under ``outdir/videos`` and ``outdir/questions.jsonl``; return the JSONL path. With
    ``questions_per_video`` > 1, each video's case is followed by its `follow_ups`."""
    if fmt not in ("mp4", "frames"):
        raise ConfigError(f"format must be mp4 or frames, got {fmt!r}")
    if n < 1 or questions_per_video < 1:
        raise ConfigError(f"n and questions_per_video must be >= 1, got {n}, {questions_per_video}")
    outdir = Path(outdir)
    videos = outdir / "videos"
    try:
        videos.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise XCompError(f"{outdir}: cannot create output folder ({error.strerror})") from error
    count = n * (len(FAMILIES) if families == "all" else 1 if isinstance(families, str) else len(families))
    jsonl = outdir / "questions.jsonl"
    with jsonl.open("w") as out, tqdm(total=count, disable=not progress, desc="synth", unit="case") as bar:
        for case in iter_cases(families, n, seed, params, depth):
            relative = f"videos/{case.record['id']}" + (".mp4" if fmt == "mp4" else "")
            if fmt == "mp4":
                write_mp4(outdir / relative, case.frames, case.record["fps"])
            else:
                write_frames(outdir / relative, case.frames)
            case.record["video"] = relative
            for record in [case.record, *follow_ups(case.record, questions_per_video - 1)]:
                out.write(json.dumps(record) + "\n")
            bar.update()
    return jsonl


def read_questions(path: str | Path, required: Sequence[str]) -> list[dict]:
    """The records of a questions JSONL (the format `write_suite` writes), each checked for ``required`` keys, so
    a malformed line is a one-line error naming the file and line, not a traceback halfway through a run."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"questions file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}:{number}: not JSON ({error.msg})") from error
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object")
        missing = [key for key in required if key not in row]
        if missing:
            raise ConfigError(f"{path}:{number}: missing keys {missing}")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path}: no questions")
    return rows
