"""Evaluate one system (a pipeline: model + token compressor + frame selector) on a QA suite.

`answer_suite` goes through an `EvalSuite` video by video (each video decoded once for all its questions, then let
go) and answers each question with `XCompPipeline.answer`, keeping the answer, the kept frames and the run's cost
as a `Record`; `summarize` turns records into the metrics a run reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from tqdm.auto import tqdm

from xcomp.data.source import Question
from xcomp.evaluation.breakdowns import binomial_se, breakdown_metrics, clustered_se
from xcomp.evaluation.report import (
    DEPTH_BINS,
    SINGLE_EVENT_FAMILIES,
    Record,
    accuracy,
    event_by_depth,
    group,
    recall,
)
from xcomp.evaluation.suite import EvalSuite
from xcomp.pipeline import XCompPipeline
from xcomp.video.decode import Video

STAGES = ("load", "vision", "scoring", "generate", "option_scoring")
"""Measured stages of an answer (`Answer.accounting['seconds']`); 'load' is decoding when given a file."""


def event_kept(meta: dict, timestamps: Sequence[float]) -> bool | None:
    """Single-event questions: whether a kept frame's time falls on the event's frames (None for others)."""
    if meta.get("family") not in SINGLE_EVENT_FAMILIES or not meta.get("events"):
        return None
    event, fps = meta["events"][0], meta["fps"]
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


def answer_video(
    pipe: XCompPipeline,
    questions: Sequence[Question],
    video: Video,
    system: str = "system",
    max_new_tokens: int = 8,
    reuse: bool = True,
) -> list[Record]:
    """Answer each of ``questions`` about the decoded ``video`` with ``pipe`` (its selector keeps frames, its
    model compresses tokens). With ``reuse``, what does not depend on the question is computed once for all of
    them (the video's visual tokens); without, each question is answered on its own (the reference path)."""
    records = []
    T = pipe.model.model.visual_tokens_per_frame
    encoded = pipe.encode(video) if reuse else None
    for q in questions:
        ans = pipe.answer(video, q.question, q.options, max_new_tokens=max_new_tokens, encoded=encoded)
        cost = answer_cost(ans.accounting)
        records.append(
            Record(
                system=system,
                frames=ans.num_frames,
                llm_tokens=len(ans.kept_frames) * T,
                token_layers=cost["token_layers"],
                id=q.id,
                family=q.meta.get("family", ""),
                depth=q.meta.get("depth"),
                answer=q.answer,
                prediction=ans.choice,
                video=q.video,
                kept_frames=ans.kept_frames,
                event_kept=event_kept(q.meta, ans.kept_timestamps),
                choice_scored=ans.choice_scored,
                unparsed=ans.unparsed,
                text=ans.text,
                cost=cost,
                meta=q.meta,
            )
        )
    return records


def answer_suite(
    pipe: XCompPipeline,
    suite: EvalSuite,
    system: str = "system",
    max_new_tokens: int = 8,
    progress: bool = False,
    reuse: bool = True,
) -> list[Record]:
    """Answer every question of ``suite``, video by video, in suite order (``reuse`` as in `answer_video`)."""
    records = []
    with tqdm(total=len(suite.questions), desc=system, unit="question", disable=not progress) as bar:
        for _, questions, video in suite.loader():
            records += answer_video(pipe, questions, video, system, max_new_tokens, reuse)
            bar.update(len(questions))
    return records


def summarize(
    records: Sequence[Record], breakdowns: Sequence[str] = (), macro: str | None = None
) -> dict[str, float]:
    """The metrics of a run: accuracy with its binomial SE and its SE clustered by video
    (`accuracy_se_cluster`), per value of each of the source's ``breakdowns`` fields and their ``macro`` mean
    (`xcomp.evaluation.breakdowns`), per synthetic family and depth bin, QC frame recall (overall and by depth),
    each proportion ``m`` with its binomial SE as ``m_se``; the share of replies that named no option
    (`unparsed`); cost and its ratio to dense over all sampled frames, seconds per stage (means per question),
    questions answered."""
    n = len(records)
    acc = accuracy(records)
    out = {
        "accuracy": acc,
        "accuracy_se": binomial_se(acc, n),
        "accuracy_se_cluster": clustered_se(records),
        "questions": float(n),
        "videos": float(len({r.video for r in records})),
        **breakdown_metrics(records, breakdowns, macro),
    }
    for (family,), rows in sorted(group(records, "family").items()):
        if not family:
            continue
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
    out["unparsed"] = sum(r.unparsed for r in records) / n
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
