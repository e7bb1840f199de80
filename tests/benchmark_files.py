"""Small copies of the five benchmarks in their published schemas and layouts (with their quirks), written by the
tests themselves: 2 videos x 2 questions each, short generated videos (16 frames of 64 px at 1 fps).

Each writer returns (annotations path, videos folder) and accepts ``edit(rows)`` to break a row on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

FRAMES, SIZE = 16, 64
"""Frames (at 1 fps) and side of the generated videos."""
COLOURS = ["red", "green", "blue", "yellow"]


def video(path: Path, seed: int) -> Path:
    """A short mp4 of moving coloured squares."""
    from xcomp.synth.generate import write_mp4

    rng = np.random.default_rng(seed)
    frames = np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8)
    for t in range(FRAMES):
        y, x = rng.integers(0, SIZE - 16, size=2)
        frames[t, y : y + 16, x : x + 16] = rng.integers(0, 256, size=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, 1.0)
    return path


def frame_folder(path: Path, seed: int) -> Path:
    """The same kind of video as a folder of PNG frames (a benchmark fork's pre-extracted frames)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for t in range(FRAMES):
        frame = np.full((SIZE, SIZE, 3), rng.integers(0, 256, size=3), np.uint8)
        Image.fromarray(frame).save(path / f"{t + 1:05d}.jpg")
    return path


def _json(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return path


def _parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


Edit = Callable[[list], None] | None


def lvbench(root: Path, edit: Edit = None) -> tuple[Path, Path]:
    """VideoChat-Flash's LVBench JSON list; one video nested in a numbered sub-folder, one as a frame folder; the
    first question has two types."""
    rows = []
    for v, vid in enumerate(["lv_a", "lv_b"]):
        for q in range(2):
            colours = [f"({L}) {c}" for L, c in zip("ABCD", COLOURS)]
            rows.append({
                "video": vid, "type": ["sport", "documentary"][v], "question": f"What colour is square {q}?",
                "candidates": colours, "answer": colours[(v + q) % 4], "time_reference": "00:01-00:05",
                "question_type": ["key information retrieval", "reasoning"] if (v, q) == (0, 0) else ["reasoning"],
            })  # fmt: skip
    if edit:
        edit(rows)
    video(root / "videos" / "00000" / "lv_a.mp4", 1)
    frame_folder(root / "videos" / "lv_b", 2)
    return _json(root / "lvbench.json", rows), root / "videos"


def lvbench_meta(root: Path, edit: Edit = None) -> tuple[Path, Path]:
    """The benchmark's own video_info.meta.jsonl: one line per video, options embedded in the question."""
    lines = []
    for v, vid in enumerate(["lm_a", "lm_b"]):
        qa = [
            {"uid": f"{vid}_{q}", "question": f"What colour is square {q}?\n(A) red\n(B) green\n(C) blue\n(D) yellow",
             "answer": "ABCD"[(v + q) % 4], "question_type": ["entity recognition"], "time_reference": "00:02"}
            for q in range(2)
        ]  # fmt: skip
        lines.append({"key": vid, "type": "live", "qa": qa})
        video(root / "videos" / f"{vid}.mp4", 3 + v)
    if edit:
        edit(lines)
    path = root / "video_info.meta.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path, root / "videos"


def videomme(root: Path, edit: Edit = None) -> tuple[Path, Path]:
    """lmms-eval's Video-MME parquet; options already start with 'A. '; one video stored as .MP4."""
    rows = []
    for v, (vid, duration) in enumerate([("yt_a", "short"), ("yt_b", "long")]):
        for q in range(2):
            rows.append({
                "video_id": f"{v + 1:03d}", "videoID": vid, "question_id": f"{v + 1:03d}-{q + 1}",
                "duration": duration, "domain": "Sports", "sub_category": "Football",
                "task_type": ["Counting Problem", "Object Recognition"][q], "question": f"What colour is square {q}?",
                "options": [f"{L}. {c}" for L, c in zip("ABCD", COLOURS)], "answer": "ABCD"[(v + q) % 4],
                "url": f"https://www.youtube.com/watch?v={vid}",
            })  # fmt: skip
    if edit:
        edit(rows)
    video(root / "data" / "yt_a.mp4", 5)
    video(root / "data" / "yt_b.MP4", 6)
    return _parquet(root / "videomme" / "test-00000-of-00001.parquet", rows), root / "data"


def mlvu(root: Path, edit: Edit = None) -> tuple[Path, Path]:
    """MLVU's json/ folder (two task files and an open-ended one), answers as candidate texts; videos in a
    numbered task folder and a plain one."""
    tasks = {"1_plotQA": ("plotQA", "ml_a.mp4"), "4_count": ("count", "ml_b.mp4")}
    files = {}
    for t, (stem, (task, name)) in enumerate(tasks.items()):
        files[stem] = [
            {"video": name, "duration": 16.0, "question": f"What colour is square {q}?", "candidates": COLOURS,
             "answer": COLOURS[(t + q) % 4], "question_type": task}
            for q in range(2)
        ]  # fmt: skip
    if edit:
        edit(files)
    for stem, rows in files.items():
        _json(root / "json" / f"{stem}.json", rows)
    _json(root / "json" / "8_sub_scene.json", [{"video": "ml_c.mp4", "question": "Describe the scene.", "answer": "…"}])
    video(root / "video" / "1_plotQA" / "ml_a.mp4", 7)
    video(root / "video" / "count" / "ml_b.mp4", 8)
    return root / "json", root / "video"


def longvideobench(root: Path, edit: Edit = None) -> tuple[Path, Path]:
    """LongVideoBench rows as JSON: option0..4 with 'N/A' for unused ones, correct_choice an integer."""
    rows = []
    for v, vid in enumerate(["lvb_a", "lvb_b"]):
        for q in range(2):
            options = COLOURS[: 3 + q] + ["N/A"] * (2 - q)
            rows.append({
                "id": f"{vid}_{q}", "video_id": vid, "video_path": f"{vid}.mp4", "subtitle_path": f"{vid}_en.json",
                "duration": 16.0, "duration_group": [15, 600][v], "question": f"What colour is square {q}?",
                **{f"option{i}": o for i, o in enumerate(options)}, "correct_choice": (v + q) % 3,
                "question_category": ["S2E", "T3O"][q], "topic_category": "NP-News-Programs",
            })  # fmt: skip
    if edit:
        edit(rows)
    for v, vid in enumerate(["lvb_a", "lvb_b"]):
        video(root / "videos" / f"{vid}.mp4", 9 + v)
    return _json(root / "lvb_val.json", rows), root / "videos"


def egoschema(root: Path, edit: Edit = None) -> tuple[Path, Path]:
    """lmms-eval's EgoSchema Subset parquet: five 'A. ' options, the answer an integer."""
    rows = [
        {"question_idx": f"q{i}", "video_idx": vid, "question": f"What does C do with square {i}?",
         "option": [f"{L}. {c}" for L, c in zip("ABCDE", [*COLOURS, "nothing"])], "answer": i % 5}
        for i, vid in enumerate(["ego_a", "ego_a", "ego_b", "ego_b"])
    ]  # fmt: skip
    if edit:
        edit(rows)
    for v, vid in enumerate(["ego_a", "ego_b"]):
        video(root / "videos" / f"{vid}.mp4", 11 + v)
    return _parquet(root / "Subset" / "test-00000-of-00001.parquet", rows), root / "videos"


WRITERS = {
    "lvbench": lvbench,
    "videomme": videomme,
    "mlvu": mlvu,
    "longvideobench": longvideobench,
    "egoschema": egoschema,
}
"""The benchmark name (its conf/data option) -> its writer."""
