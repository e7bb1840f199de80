"""The QA suites of a job: the test suite (group `data`, a source component) and the validation suite (`val`: the
test source's settings with another seed and size; answered during training, and instead of the test suite when
`test=false`), at the job's frame count."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from xcomp.errors import ConfigError
from xcomp.evaluation.suite import EvalSuite, frame_sampling
from xcomp.experiment.components import build


def val_data(cfg: DictConfig) -> DictConfig:
    """The validation suite's settings: the test suite's, with `val.n` questions per family of seed `val.seed`
    (a source that generates its questions: one with `n` and `seed` settings)."""
    if "n" not in cfg.data or "seed" not in cfg.data:
        raise ConfigError("a validation suite (train.val_every, test=false) is drawn from a generated suite: data=synth")
    return OmegaConf.merge(cfg.data, {"n": cfg.val.n, "seed": cfg.val.seed})


def scored_data(cfg: DictConfig) -> DictConfig:
    """The suite a job's metrics come from: the test suite, or the validation suite when `test=false` (a search
    trial, so that choosing among trials never looks at the test questions)."""
    return cfg.data if cfg.test else val_data(cfg)


def load(cfg: DictConfig, data: DictConfig, image_size: int, clip: int) -> EvalSuite:
    """The source ``data`` built, its questions read and checked, its videos found (nothing decoded yet), sampled
    as the source says at the job's `frames` frames of ``image_size`` px (a multiple of the model's ``clip``)."""
    source = build(data, progress=cfg.progress)
    sampling, num_frames = frame_sampling(source, cfg.frames, image_size, clip)
    return EvalSuite(source, source.suite(), sampling, num_frames, cfg.video.backend)
