"""What an evaluation or training stage of a job hands back besides its answers: the vision feature cache it read
and wrote, its metrics under the job's names, and the tags saying what the model ran with (used by `job` and
`training` alike, so neither imports the other)."""

from __future__ import annotations

import json

from omegaconf import DictConfig

from xcomp.errors import ConfigError


def feature_cache(cfg: DictConfig, backend: str | None = None):
    """The job's vision feature cache (`cache.features`, with `reuse`), or None; its entries are of frames decoded
    by ``backend`` (default: the job's ``video.backend``)."""
    from xcomp.evaluation.features import FeatureCache

    if not cfg.cache.features or not cfg.reuse:  # reuse=false is the reference path: nothing kept
        return None
    if cfg.cache.max_gb <= 0:
        raise ConfigError(f"cache.max_gb must be > 0, got {cfg.cache.max_gb}")
    return FeatureCache(cfg.cache.dir, int(cfg.cache.max_gb * 2**30), context={"backend": backend or cfg.video.backend})


def scored(cfg: DictConfig, metrics: dict[str, float]) -> dict[str, float]:
    """The job's metrics under their names: ``val.``-prefixed when it was scored on validation (`test=false`)."""
    return metrics if cfg.test else {f"val.{k}": v for k, v in metrics.items()}


def used(config) -> dict[str, str]:
    """Tags saying what a model ran with: its compression and per-layer schedule, and the budget a budgeted
    method spent (`BudgetedCompressor`: the run's ``budget`` or LP-Comp's share)."""
    from xcomp.compression.compressors import compressor_for

    tags = {"compression": config.compression, "schedule.kept": json.dumps(config.compression_schedule().kept)}
    budget = getattr(compressor_for(config), "budget", None)
    return {**tags, "budget": repr(float(budget))} if budget is not None else tags


