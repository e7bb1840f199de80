"""The QA suites of a job: the test suite (group `data`) and the validation suite (`val`: the same synthetic
settings, another seed and size; answered during training, and instead of the test suite when `test=false`),
decoded once at the job's frame count."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from xcomp.errors import ConfigError


def suite_path(data: DictConfig, progress: bool = False) -> Path:
    """questions.jsonl of the configured suite (a synthetic one is generated on first use)."""
    from xcomp.synth.cache import cached_suite
    from xcomp.synth.generate import SynthParams

    if data.source == "jsonl":
        return Path(data.questions)
    params = SynthParams(frames=data.video_frames, size=data.size, noise=data.noise, span=data.span)
    return cached_suite(data.cache_dir, list(data.families), data.n, data.seed, params, progress)


def val_data(cfg: DictConfig) -> DictConfig:
    """The validation suite's settings: the test suite's, with `val.n` questions per family of seed `val.seed`."""
    if cfg.data.source != "synth":
        raise ConfigError("a validation suite (train.val_every, test=false) is drawn from a synthetic one: data=synth")
    return OmegaConf.merge(cfg.data, {"n": cfg.val.n, "seed": cfg.val.seed})


def scored_data(cfg: DictConfig) -> DictConfig:
    """The suite a job's metrics come from: the test suite, or the validation suite when `test=false` (a search
    trial, so that choosing among trials never looks at the test questions)."""
    return cfg.data if cfg.test else val_data(cfg)


def load(cfg: DictConfig, data: DictConfig, image_size: int):
    """The questions of ``data`` (up to its `limit`) and their videos at `frames` frames of ``image_size`` px, as a
    `xcomp.train.suite_eval.Suite`."""
    from xcomp.evaluation.runner import load_suite
    from xcomp.train.suite_eval import Suite

    limit = data.limit if data.source == "jsonl" else None
    rows, videos = load_suite(
        suite_path(data, cfg.progress), cfg.frames, image_size, limit, cfg.progress, cfg.video.backend
    )
    return Suite(rows, videos)
