"""Frame sampling and QC-Comp settings saved beside a model (pipeline_config.json).

A model trained on 32-frame videos should not be asked to answer from 64, and a published one should keep its
reference settings: the folder says which, as generation_config.json holds a model's generation defaults.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from xcomp.compression.qc_comp import QCCompConfig
from xcomp.errors import ConfigError
from xcomp.model.convert import read_json
from xcomp.structured import load_structured
from xcomp.video.sampling import FrameSamplingConfig

PIPELINE_CONFIG = "pipeline_config.json"
"""Name of the file in a model folder."""


def reference_defaults(clip: int, image_size: int) -> tuple[FrameSamplingConfig, QCCompConfig]:
    """The published model's settings: 1 fps clamped to [64, 1024] frames (a multiple of the clip length, at the
    tower's resolution), QC-Comp keeping 25 %."""
    return FrameSamplingConfig(multiple_of=clip, size=image_size), QCCompConfig()


def answer_defaults(frames: int, clip: int, image_size: int) -> tuple[FrameSamplingConfig, QCCompConfig]:
    """Defaults for a model trained on videos of up to ``frames`` frames: QC-Comp keeps ``frames`` frames out of
    at most twice as many sampled, so the LLM never answers from more frames than it learned on (on the
    synthetic suite the tiny model is at chance from 64 frames, and keeping half beats keeping a quarter)."""
    sampling = FrameSamplingConfig(
        min_frames=min(64, 2 * frames), max_frames=2 * frames, multiple_of=clip, size=image_size
    )
    return sampling, QCCompConfig(keep=frames)


def save_pipeline_config(path: str | os.PathLike, sampling: FrameSamplingConfig, qc: QCCompConfig) -> None:
    data = {"sampling": dataclasses.asdict(sampling), "qc": dataclasses.asdict(qc)}
    (Path(path) / PIPELINE_CONFIG).write_text(json.dumps(data, indent=2) + "\n")


def load_pipeline_config(
    path: str | os.PathLike, clip: int, image_size: int
) -> tuple[FrameSamplingConfig, QCCompConfig]:
    """The settings saved with the model at ``path``, or `reference_defaults`."""
    file = Path(path) / PIPELINE_CONFIG
    if not file.is_file():
        return reference_defaults(clip, image_size)
    data = read_json(file)
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a JSON object")
    sampling = load_structured(FrameSamplingConfig, data.get("sampling", {}), f"{file} sampling")
    return sampling, load_structured(QCCompConfig, data.get("qc", {}), f"{file} qc")
