"""`xcomp eval`: accuracy of several systems (model × compression × frame selection) on a QA JSONL.

A *system* is a trained model folder plus how it is run: an optional compression override, and QC-Comp frame
selection (none, segment-local or global scoring) keeping a fraction of the frames. Every system answers the
same questions from the same decoded frames at each frame count, so rows differ only in the method.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from xcomp.errors import ConfigError
from xcomp.evaluation.report import SINGLE_EVENT_FAMILIES, Record, depth_table, markdown_table, plot, recall
from xcomp.model.configuration import CompressionMethod
from xcomp.typed_config import build


@dataclass
class SystemSpec:
    """One evaluated system."""

    name: str
    """Row label in the results."""
    model: str
    """Model folder (ours or published layout)."""
    compression: CompressionMethod | None = None
    """Override the model's compression method (e.g. evaluate an LP-Comp model densely)."""
    schedule: list[int] | None = None
    """Override the tokens per frame entering each decoder layer (with `compression`)."""
    qc: Literal["none", "local", "global"] = "none"
    """QC-Comp frame selection: none (all frames), segment-local or global attention scoring."""
    keep: float = 0.25
    """Fraction of frames QC-Comp keeps (ignored when qc='none')."""
    segment_frames: int = 8
    """Frames per QC-Comp scoring window (qc='local')."""
    shifts: list[int] | None = None
    """Window offsets of the QC-Comp scoring passes; None = the `QCCompConfig` default."""
    frames: list[int] | None = None
    """Frame counts for this system only; None = the config's `frames`."""


@dataclass
class EvalConfig:
    """What to evaluate and where to write it."""

    data: str
    """QA JSONL (the `xcomp synth` format); videos are resolved relative to it."""
    output_dir: str
    """Folder for predictions.jsonl, results.md and plots."""
    systems: list[SystemSpec] = field(default_factory=list)
    """Systems to compare."""
    frames: list[int] = field(default_factory=lambda: [32])
    """Frame counts sampled from each video (each a multiple of the models' clip length)."""
    limit: int | None = None
    """Evaluate only the first N questions."""
    image_size: int = 64
    """Frame side after resizing (the models' vision input size)."""

    @classmethod
    def from_file(cls, path: str | Path) -> EvalConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"eval config not found: {path}")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: cannot parse ({exc})") from exc
        systems = raw.pop("systems", [])
        if not isinstance(systems, list) or not systems:
            raise ConfigError(f"{path}: no [[systems]] to evaluate")
        specs = [build(SystemSpec, s, f"{path} [[systems]] #{i + 1}") for i, s in enumerate(systems)]
        config = build(cls, raw, str(path), systems=specs)
        for spec in specs:
            if not 0 < spec.keep <= 1:
                raise ConfigError(f"{path}: system {spec.name!r}: keep must be a fraction in (0, 1], got {spec.keep}")
            if min(spec.frames or config.frames, default=0) < 1:
                raise ConfigError(f"{path}: system {spec.name!r}: frame counts must be >= 1")
        return config


def _visual_token_layers(tokens_per_layer: list[int], text_tokens: int) -> int:
    return sum(n - text_tokens for n in tokens_per_layer)


def _event_kept(row: dict, timestamps: list[float]) -> bool | None:
    """Single-event questions: whether a kept frame's time falls on the event's frames (None for others)."""
    if row.get("family") not in SINGLE_EVENT_FAMILIES or not row.get("events"):
        return None
    event, fps = row["events"][0], row["fps"]
    return any(event["start"] <= round(t * fps) < event["end"] for t in timestamps)


def evaluate(config: EvalConfig, progress: bool = True) -> list[Record]:
    """Run every system on every question at every frame count; write predictions, tables and plots."""
    from xcomp.compression.qc_comp import QCCompConfig
    from xcomp.model.convert import load_model, model_config_file
    from xcomp.model.processing import XCompProcessor
    from xcomp.pipeline import XCompPipeline
    from xcomp.synth.generate import read_questions
    from xcomp.video import FrameSamplingConfig, load_video

    data = Path(config.data)
    rows = read_questions(data, ("id", "video", "question", "options", "answer", "family"))
    rows = rows[: config.limit] if config.limit else rows
    for spec in config.systems:  # before minutes of decoding, not after
        try:
            model_config_file(spec.model)
        except ConfigError as error:
            raise ConfigError(f"system {spec.name!r}: {error}") from error
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    videos = {}
    for frames in sorted({n for spec in config.systems for n in spec.frames or config.frames}):
        sampling = FrameSamplingConfig(size=config.image_size, min_frames=4, max_frames=max(frames, 4), allow_repeat=True)
        for row in tqdm(rows, desc=f"decode @{frames}", disable=not progress):
            videos[row["id"], frames] = load_video(data.parent / row["video"], sampling, num_frames=frames)

    records: list[Record] = []
    for spec in config.systems:
        fields = {"compression": spec.compression} if spec.compression else {}
        if spec.schedule:
            fields["schedule"] = spec.schedule
        model = load_model(spec.model, **fields)
        processor = XCompProcessor.from_pretrained(spec.model, image_size=config.image_size)
        qc = QCCompConfig(
            scorer="local" if spec.qc == "none" else spec.qc, segment_frames=spec.segment_frames, shifts=spec.shifts
        )
        pipe = XCompPipeline(model, processor, qc=qc)
        for frames in spec.frames or config.frames:
            keep = 1.0 if spec.qc == "none" else spec.keep
            for row in tqdm(rows, desc=f"{spec.name} @{frames}", disable=not progress):
                ans = pipe.answer(videos[row["id"], frames], row["question"], row["options"], keep=keep, max_new_tokens=8)
                acc = ans.accounting
                records.append(
                    Record(
                        system=spec.name,
                        frames=frames,
                        llm_tokens=len(ans.kept_frames) * model.model.visual_tokens_per_frame,
                        token_layers=_visual_token_layers(acc["tokens_per_layer"], acc["text_tokens"]),
                        id=row["id"],
                        family=row["family"],
                        depth=row.get("depth"),
                        answer=row["answer"],
                        prediction=ans.choice,
                        kept_frames=ans.kept_frames,
                        event_kept=_event_kept(row, ans.kept_timestamps),
                        choice_scored=ans.choice_scored,
                    )
                )
    write_results(records, out_dir)
    return records


def write_results(records: list[Record], out_dir: Path) -> None:
    with (out_dir / "predictions.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps({**dataclasses.asdict(r), "kept_frames": list(r.kept_frames)}) + "\n")
    plots = plot(records, out_dir)
    text = [
        "# Evaluation results",
        "",
        "## Accuracy per system and frame count",
        "",
        markdown_table(records),
        "",
        "## Accuracy by event depth (needle and locate questions)",
        "",
        depth_table(records),
        "",
        "## Event frame recall by depth (systems that select frames)",
        "",
        depth_table([r for r in records if 0 < len(r.kept_frames) < r.frames], recall),
        "",
        *(f"![{p.stem}]({p.name})" for p in plots),
        "",
    ]
    (out_dir / "results.md").write_text("\n".join(text))
