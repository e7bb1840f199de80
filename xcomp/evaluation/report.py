"""Per-question evaluation records and the metrics computed from them (accuracy, frame recall, depth bins)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

DEPTH_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Event depth bins (fraction of the video) for recall-vs-depth."""
SINGLE_EVENT_FAMILIES = ("needle", "locate")
"""Families asking about one event (its `depth` is where it happens): the position-bias checks use these."""


@dataclass
class Record:
    """One answered question."""

    system: str
    """Name of the evaluated system (model + compression + frame selection)."""
    frames: int
    """Frames sampled from the video."""
    llm_tokens: int
    """Visual tokens that enter the LLM's first layer (the token budget of the run)."""
    token_layers: int
    """Visual token-layers processed by the LLM (sum over layers)."""
    id: str
    family: str
    depth: float | None
    answer: str
    prediction: str | None
    video: str = ""
    """The question's video id (questions of one video are clustered in the SE)."""
    kept_frames: Sequence[int] = ()
    event_kept: bool | None = None
    """Single-event questions: whether a frame showing the event reached the LLM (frame-selection recall)."""
    choice_scored: bool = False
    """Whether the prediction came from scoring the options because the generated text named none."""
    unparsed: bool = False
    """Whether the generated text named no option (by the source's answer rule)."""
    text: str = ""
    """The generated answer."""
    cost: dict = field(default_factory=dict)
    """Analytic cost and measured seconds of this answer (see `evaluation.runner.answer_cost`)."""
    meta: dict = field(default_factory=dict)
    """The question's metadata from its source (benchmark fields for breakdowns)."""

    @property
    def correct(self) -> bool:
        return self.prediction == self.answer


def accuracy(records: Iterable[Record]) -> float:
    records = list(records)
    return sum(r.correct for r in records) / len(records) if records else float("nan")


def group(records: Iterable[Record], *keys: str) -> dict[tuple, list[Record]]:
    out: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        out[tuple(getattr(r, k) for k in keys)].append(r)
    return dict(out)


def depth_bin(depth: float) -> int:
    for i, edge in enumerate(DEPTH_BINS[1:-1]):
        if depth < edge:
            return i
    return len(DEPTH_BINS) - 2


def recall(records: Iterable[Record]) -> float:
    records = [r for r in records if r.event_kept is not None]
    return sum(r.event_kept for r in records) / len(records) if records else float("nan")


def event_by_depth(records: Iterable[Record], metric=accuracy) -> dict[tuple, list[tuple[float, int]]]:
    """(system, frames) -> [(metric, count) per depth bin] over single-event questions (`accuracy` or `recall`)."""
    events = [r for r in records if r.family in SINGLE_EVENT_FAMILIES and r.depth is not None]
    out = {}
    for key, rows in sorted(group(events, "system", "frames").items()):
        by_bin = defaultdict(list)
        for r in rows:
            by_bin[depth_bin(r.depth)].append(r)
        out[key] = [(metric(by_bin[i]), len(by_bin[i])) for i in range(len(DEPTH_BINS) - 1)]
    return out
