"""Frame sampling and frame selection saved beside a model (pipeline_config.json).

A model trained on 32-frame videos should not be asked to answer from 64, and a published one should keep its
reference settings: the folder says which, as generation_config.json holds a model's generation defaults. The
file holds ``sampling`` (`FrameSamplingConfig`) and ``select`` (a registered `FrameSelector`: its ``name`` and
fields).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from xcomp.compression.qc_comp import QCComp
from xcomp.compression.selectors import FrameSelector, all_selectors
from xcomp.errors import ConfigError
from xcomp.model.convert import read_json
from xcomp.structured import load_structured
from xcomp.video.sampling import FrameSamplingConfig

PIPELINE_CONFIG = "pipeline_config.json"
"""Name of the file in a model folder."""
LEGACY_QC = {"keep": "keep_frames", "keep_ratio": "keep"}
"""Field names of the ``qc`` table that files written before ``select`` hold, as `QCComp` names them."""


def reference_defaults(clip: int, image_size: int) -> tuple[FrameSamplingConfig, FrameSelector]:
    """The published model's settings: 1 fps clamped to [64, 1024] frames (a multiple of the clip length, at the
    tower's resolution), QC-Comp keeping 25 %."""
    return FrameSamplingConfig(multiple_of=clip, size=image_size), QCComp()


def answer_defaults(frames: int, clip: int, image_size: int) -> tuple[FrameSamplingConfig, FrameSelector]:
    """Defaults for a model trained on videos of up to ``frames`` frames: QC-Comp keeps ``frames`` frames out of
    at most twice as many sampled, so the LLM never answers from more frames than it learned on (on the
    synthetic suite the tiny model is at chance from 64 frames, and keeping half beats keeping a quarter)."""
    sampling = FrameSamplingConfig(
        min_frames=min(64, 2 * frames), max_frames=2 * frames, multiple_of=clip, size=image_size
    )
    return sampling, QCComp(keep_frames=frames)


def save_pipeline_config(path: str | os.PathLike, sampling: FrameSamplingConfig, selector: FrameSelector) -> None:
    """Write ``sampling`` and ``selector`` to the model folder ``path``."""
    data = {"sampling": dataclasses.asdict(sampling), "select": {"name": selector.name, **dataclasses.asdict(selector)}}
    (Path(path) / PIPELINE_CONFIG).write_text(json.dumps(data, indent=2) + "\n")


def load_pipeline_config(
    path: str | os.PathLike, clip: int, image_size: int
) -> tuple[FrameSamplingConfig, FrameSelector]:
    """The settings saved with the model at ``path``, or `reference_defaults`."""
    file = Path(path) / PIPELINE_CONFIG
    if not file.is_file():
        return reference_defaults(clip, image_size)
    data = read_json(file)
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a JSON object")
    sampling = load_structured(FrameSamplingConfig, data.get("sampling", {}), f"{file} sampling")
    if "select" not in data and isinstance(data.get("qc"), dict):
        data["select"] = {"name": QCComp.name, **{LEGACY_QC.get(k, k): v for k, v in data["qc"].items()}}
    select = dict(data.get("select", {"name": QCComp.name}))
    selectors = all_selectors()
    name = select.pop("name", None)
    if name not in selectors:
        raise ConfigError(f"{file} select: name must be one of {', '.join(sorted(selectors))}, got {name!r}")
    return sampling, load_structured(selectors[name], select, f"{file} select")
