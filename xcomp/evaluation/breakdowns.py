"""Accuracy as the benchmarks report it: with a standard error clustered by video, per value of the benchmark's
own fields (`accuracy.<field>.<value>`), and the macro mean over one field's values where that is the headline
(MLVU's M-Avg)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence

from xcomp.evaluation.report import Record, accuracy


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` over ``n`` questions."""
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def clustered_se(records: Sequence[Record]) -> float:
    """Standard error of the accuracy with questions clustered by video (Miller, arXiv:2411.00640, Eq. 4, as
    lmms-eval computes it): sqrt(var / n + Σ_c [(Σ_i d_i)² − Σ_i d_i²] / n²) with d_i = s_i − mean and var the
    sample variance (n − 1). Questions on one video are correlated; the binomial SE treats them as independent
    and understates the error. NaN below 2 questions."""
    n = len(records)
    if n < 2:
        return float("nan")
    scores = [float(r.correct) for r in records]
    mean = sum(scores) / n
    var = sum((s - mean) ** 2 for s in scores) / (n - 1)
    by_video: dict[str, list[float]] = defaultdict(list)
    for r, s in zip(records, scores):
        by_video[r.video].append(s - mean)
    cross = sum(sum(d) ** 2 - sum(x * x for x in d) for d in by_video.values()) / n**2
    return math.sqrt(max(var / n + cross, 0.0))


def safe_key(value) -> str:
    """A breakdown value as part of an MLflow metric key (letters, digits, '_' and '-'; others become '_')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(value)).strip("_") or "_"


def by_value(records: Sequence[Record], field: str) -> dict[str, list[Record]]:
    """Records per value of metadata ``field``; a record whose value is a list counts under each of its values."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        value = r.meta.get(field)
        keys = {safe_key(v) for v in (value if isinstance(value, list) else [value]) if v is not None and v != ""}
        for key in keys:  # once per value, however often the list names it
            groups[key].append(r)
    return dict(sorted(groups.items()))


def breakdown_metrics(records: Sequence[Record], fields: Sequence[str], macro: str | None = None) -> dict[str, float]:
    """``accuracy.<field>.<value>`` and its binomial ``_se`` for each field, and ``accuracy.macro`` (the mean of
    ``macro``'s per-value accuracies, each value weighted alike) with its SE."""
    out: dict[str, float] = {}
    for field in fields:
        for value, rows in by_value(records, field).items():
            acc = accuracy(rows)
            out[f"accuracy.{field}.{value}"] = acc
            out[f"accuracy.{field}.{value}_se"] = binomial_se(acc, len(rows))
    if macro is not None:
        groups = by_value(records, macro)
        if groups:
            accs = [accuracy(rows) for rows in groups.values()]
            out["accuracy.macro"] = sum(accs) / len(accs)
            ses = [binomial_se(a, len(rows)) for a, rows in zip(accs, groups.values())]
            out["accuracy.macro_se"] = math.sqrt(sum(se * se for se in ses)) / len(ses)
    return out
