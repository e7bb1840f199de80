"""Turn per-question evaluation records into accuracy tables and plots."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
    kept_frames: Sequence[int] = ()
    event_kept: bool | None = None
    """Single-event questions: whether a frame showing the event reached the LLM (frame-selection recall)."""
    choice_scored: bool = False
    """Whether the prediction came from scoring the options because the generated text named none."""

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


def markdown_table(records: Sequence[Record]) -> str:
    """Accuracy per system and frame count: overall, per family, with the token budget."""
    families = sorted({r.family for r in records})
    header = ["system", "frames", "visual tokens in", "token-layers", "n", "accuracy", *families, "options scored"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (system, frames), rows in sorted(group(records, "system", "frames").items(), key=lambda kv: kv[0]):
        per_family = group(rows, "family")
        cells = [
            system,
            str(frames),
            str(round(sum(r.llm_tokens for r in rows) / len(rows))),
            str(round(sum(r.token_layers for r in rows) / len(rows))),
            str(len(rows)),
            f"{accuracy(rows):.3f}",
            *(f"{accuracy(per_family.get((f,), [])):.3f}" for f in families),
            f"{sum(r.choice_scored for r in rows) / len(rows):.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def depth_table(records: Sequence[Record], metric=accuracy) -> str:
    """Single-event accuracy (or frame recall) per depth bin: the position-bias check."""
    bins = [f"{DEPTH_BINS[i]:.1f}-{DEPTH_BINS[i + 1]:.1f}" for i in range(len(DEPTH_BINS) - 1)]
    lines = ["| system | frames | " + " | ".join(bins) + " |", "|" + "---|" * (len(bins) + 2)]
    for (system, frames), cells in event_by_depth(records, metric).items():
        lines.append(f"| {system} | {frames} | " + " | ".join(f"{a:.2f} ({n})" for a, n in cells) + " |")
    return "\n".join(lines)


def plot(records: Sequence[Record], out_dir: Path) -> list[Path]:
    """accuracy_vs_budget.png, event_accuracy_vs_depth.png and (with frame selection)
    event_recall_vs_depth.png; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for (system,), rows in sorted(group(records, "system").items()):
        points = sorted(
            (sum(r.token_layers for r in g) / len(g), accuracy(g)) for g in group(rows, "frames").values()
        )
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=system)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("visual token-layers in the LLM (log; QC scoring not included)")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy vs LLM token budget")
    paths.append(_save(fig, ax, out_dir / "accuracy_vs_budget.png"))

    centres = [(DEPTH_BINS[i] + DEPTH_BINS[i + 1]) / 2 for i in range(len(DEPTH_BINS) - 1)]
    for metric, label, name in (
        (accuracy, "accuracy", "event_accuracy_vs_depth.png"),
        (recall, "event frame kept (recall)", "event_recall_vs_depth.png"),
    ):
        selected = [r for r in records if metric is accuracy or 0 < len(r.kept_frames) < r.frames]
        by_depth = {k: v for k, v in event_by_depth(selected, metric).items() if any(n for _, n in v)}
        if not by_depth:
            continue
        fig, ax = plt.subplots(figsize=(9, 4.5))
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
        for (system, frames), cells in by_depth.items():
            ax.plot(centres, [a for a, _ in cells], marker="o", label=f"{system} @{frames}")
        ax.set_xlabel("event depth (fraction of the video)")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{label.capitalize()} vs event depth (needle, locate)")
        paths.append(_save(fig, ax, out_dir / name))
    return paths


def _save(fig, ax, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
