"""Evaluate one system (a pipeline: model + token compressor + frame selector) on a QA suite.

`load_suite` reads an `xcomp synth`-format JSONL and decodes every video once at a frame count (the same frames
for every system); `answer_questions` answers each question with `XCompPipeline.answer` and keeps the answer,
the kept frames and the run's cost as a `Record`; `summarize` turns records into the metrics a run reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from xcomp.evaluation.report import (
    DEPTH_BINS,
    SINGLE_EVENT_FAMILIES,
    Record,
    accuracy,
    event_by_depth,
    group,
    recall,
)
from xcomp.pipeline import XCompPipeline
from xcomp.video.decode import Video

QUESTION_KEYS = ("id", "video", "question", "options", "answer", "family")
"""Keys every question of a suite must have."""
STAGES = ("load", "vision", "scoring", "generate", "option_scoring")
"""Measured stages of an answer (`Answer.accounting['seconds']`); 'load' is decoding when given a file."""


def load_suite(
    questions: str | Path,
    frames: int,
    image_size: int,
    limit: int | None = None,
    progress: bool = False,
    backend: str = "auto",
) -> tuple[list[dict], dict]:
    """The (first ``limit``) questions and each one's video decoded to ``frames`` frames of ``image_size`` px
    (keyed by id) by video ``backend``."""
    from xcomp.synth.generate import read_questions
    from xcomp.video import FrameSamplingConfig, load_video

    questions = Path(questions)
    rows = read_questions(questions, QUESTION_KEYS)[:limit]
    sampling = FrameSamplingConfig(size=image_size, min_frames=4, max_frames=max(frames, 4), allow_repeat=True)
    videos = {}
    for row in tqdm(rows, desc=f"decode @{frames}", disable=not progress):
        videos[row["id"]] = load_video(questions.parent / row["video"], sampling, num_frames=frames, backend=backend)
    return rows, videos


def event_kept(row: dict, timestamps: Sequence[float]) -> bool | None:
    """Single-event questions: whether a kept frame's time falls on the event's frames (None for others)."""
    if row.get("family") not in SINGLE_EVENT_FAMILIES or not row.get("events"):
        return None
    event, fps = row["events"][0], row["fps"]
    return any(event["start"] <= round(t * fps) < event["end"] for t in timestamps)


def answer_cost(accounting: dict) -> dict:
    """The per-answer cost a run reports, from `Answer.accounting` (visual token-layers exclude text)."""
    text = accounting["text_tokens"]
    dense = accounting["dense"]
    return {
        "token_layers": sum(n - text for n in accounting["tokens_per_layer"]),
        "dense_token_layers": sum(n - text for n in dense["tokens_per_layer"]),
        "prefill_flops": accounting["prefill_flops"],
        "dense_prefill_flops": dense["prefill_flops"],
        "kv_cache_bytes": accounting["kv_cache_bytes"],
        "dense_kv_cache_bytes": dense["kv_cache_bytes"],
        "scoring_flops": accounting["scoring_flops"],
        "option_scoring_flops": accounting["option_scoring_flops"],
        "seconds": {stage: accounting["seconds"].get(stage, 0.0) for stage in STAGES},
    }


def answer_questions(
    pipe: XCompPipeline,
    rows: Sequence[dict],
    videos: dict[str, Video],
    system: str = "system",
    max_new_tokens: int = 8,
    progress: bool = False,
) -> list[Record]:
    """Answer every question with ``pipe`` (its selector keeps frames, its model compresses tokens)."""
    records = []
    T = pipe.model.model.visual_tokens_per_frame
    for row in tqdm(rows, desc=system, disable=not progress):
        video = videos[row["id"]]
        ans = pipe.answer(video, row["question"], row["options"], max_new_tokens=max_new_tokens)
        cost = answer_cost(ans.accounting)
        records.append(
            Record(
                system=system,
                frames=ans.num_frames,
                llm_tokens=len(ans.kept_frames) * T,
                token_layers=cost["token_layers"],
                id=row["id"],
                family=row["family"],
                depth=row.get("depth"),
                answer=row["answer"],
                prediction=ans.choice,
                kept_frames=ans.kept_frames,
                event_kept=event_kept(row, ans.kept_timestamps),
                choice_scored=ans.choice_scored,
                text=ans.text,
                cost=cost,
            )
        )
    return records


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` over ``n`` questions."""
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def summarize(records: Sequence[Record]) -> dict[str, float]:
    """The metrics of a run: accuracy, per family and depth bin, QC frame recall (overall and by depth), each
    proportion ``m`` with its binomial SE as ``m_se``; cost and its ratio to dense over all sampled frames, seconds
    per stage (means per question), questions answered."""
    n = len(records)
    acc = accuracy(records)
    out = {"accuracy": acc, "accuracy_se": binomial_se(acc, n), "questions": float(n)}
    for (family,), rows in sorted(group(records, "family").items()):
        out[f"accuracy.{family}"] = accuracy(rows)
        out[f"accuracy.{family}_se"] = binomial_se(out[f"accuracy.{family}"], len(rows))
    bins = [f"{DEPTH_BINS[i]:.1f}-{DEPTH_BINS[i + 1]:.1f}" for i in range(len(DEPTH_BINS) - 1)]
    selected = [r for r in records if len(r.kept_frames) < r.frames]
    scored = [r for r in selected if r.family in SINGLE_EVENT_FAMILIES and r.event_kept is not None]
    if scored:
        out["frame_recall"] = recall(scored)
        out["frame_recall_se"] = binomial_se(out["frame_recall"], len(scored))
    for prefix, metric, subset in (("accuracy_by_depth", accuracy, records), ("frame_recall_by_depth", recall, selected)):
        for cells in event_by_depth(subset, metric).values():  # one (system, frames) group per run
            for label, (value, count) in zip(bins, cells):
                if count:
                    out[f"{prefix}.{label}"] = value
                    out[f"{prefix}.{label}_se"] = binomial_se(value, count)
    out["options_scored"] = sum(r.choice_scored for r in records) / n
    out["kept_frames"] = _mean(len(r.kept_frames) for r in records)
    out["sampled_frames"] = _mean(r.frames for r in records)
    for key in ("token_layers", "prefill_flops", "kv_cache_bytes"):
        ours = _mean(r.cost[key] for r in records)
        out[key] = ours
        out[f"{key}_ratio"] = ours / _mean(r.cost[f"dense_{key}"] for r in records)
    out["scoring_flops"] = _mean(r.cost["scoring_flops"] for r in records)
    out["option_scoring_flops"] = _mean(r.cost["option_scoring_flops"] for r in records)
    for stage in STAGES:
        out[f"seconds.{stage}"] = _mean(r.cost["seconds"][stage] for r in records)
    return out


def prediction_rows(records: Sequence[Record]) -> list[dict]:
    """One JSON-ready dict per question (id, family, depth, truth, answer, choice, kept frames, cost)."""
    return [{**asdict(r), "kept_frames": list(r.kept_frames)} for r in records]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
