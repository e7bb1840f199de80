"""Structured configs of the sweeper (`hydra/sweeper=optuna`) and its samplers (`hydra/sweeper/sampler=...`), with
the official hydra-optuna-sweeper's keys and defaults where it has them."""

# No `from __future__ import annotations`: Hydra loads plugin modules outside sys.modules, where dataclasses
# cannot resolve string annotations.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SamplerConfig:
    """An Optuna sampler, instantiated by the sweeper."""

    _target_: str = MISSING
    """The sampler class."""


@dataclass
class TPESamplerConfig(SamplerConfig):
    """optuna.samplers.TPESampler (single- and multi-objective)."""

    _target_: str = "optuna.samplers.TPESampler"
    """The sampler class."""
    seed: int | None = None
    """Seed of the sampler's random draws."""
    n_startup_trials: int = 10
    """Trials drawn at random before TPE starts modelling."""
    n_ei_candidates: int = 24
    """Candidates scored per draw."""
    multivariate: bool = False
    """Model the parameters jointly rather than one by one."""
    constant_liar: bool = True
    """Avoid proposing what concurrently running trials already try (parallel and distributed searches)."""


@dataclass
class RandomSamplerConfig(SamplerConfig):
    """optuna.samplers.RandomSampler."""

    _target_: str = "optuna.samplers.RandomSampler"
    """The sampler class."""
    seed: int | None = None
    """Seed of the sampler's random draws."""


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    """optuna.samplers.NSGAIISampler (multi-objective, evolutionary)."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    """The sampler class."""
    seed: int | None = None
    """Seed of the sampler's random draws."""
    population_size: int = 50
    """Trials per generation."""
    mutation_prob: float | None = None
    """Probability of mutating a parameter (None: 1 / number of parameters)."""
    crossover_prob: float = 0.9
    """Probability of a crossover between two parents."""
    swapping_prob: float = 0.5
    """Probability of taking each parameter from the other parent in a crossover."""


@dataclass
class OptunaSweeperConf:
    """The sweeper: one Optuna study whose trials are Hydra jobs."""

    _target_: str = "hydra_plugins.xcomp_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    """The sweeper class."""
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    """The sampler option (hydra/sweeper/sampler: tpe, random, nsgaii)."""
    sampler: SamplerConfig = MISSING
    """The sampler, from its group."""
    direction: Any = "minimize"
    """'minimize', 'maximize', or a list of them, one per value the task returns (multi-objective)."""
    storage: Any = None
    """Study storage URL (sqlite:///..., postgresql://...); None: in memory, lost when the search ends."""
    study_name: str | None = None
    """Study to create or continue in the storage (None: a new, generated name)."""
    n_trials: int = 20
    """Trials of the study in total: a restarted search, or several workers on one storage, stop there."""
    n_jobs: int = 1
    """Trials run at once by this worker (each a job of the launcher; > 1 needs a parallel launcher)."""
    max_failure_rate: float = 0.0
    """Largest share of failed trials in the study before the search stops with an error."""
    params: dict[str, str] | None = None
    """Search space as Hydra sweep overrides: interval(a, b), range(a, b, step), choice(...), tag(log, ...)."""
    custom_search_space: str | None = None
    """Dotted path of a function(config, trial) that suggests further (e.g. dependent) parameters."""
    heartbeat_interval: int = 60
    """Seconds between heartbeats of a running trial in an RDB storage (a killed worker's trial goes stale)."""
    grace_period: int | None = None
    """Seconds without heartbeat after which a running trial is failed and retried (None: 2 x the interval)."""
    trial_key: str | None = None
    """Config key that receives the trial's number in its job's overrides (None: jobs are not told)."""
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    """Parameter sets the study tries first (`Study.enqueue_trial`, skipped if the study has them): a reference
    point such as the paper's schedule, run through the same job as the searched ones."""
    deduplicate: bool = False
    """Answer a trial whose parameters equal a finished (COMPLETE) trial's with that trial's values instead of
    running its job again (user attribute `duplicate_of`): for deterministic jobs, where a rerun is wasted."""


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="xcomp")
for _name, _node in (("tpe", TPESamplerConfig), ("random", RandomSamplerConfig), ("nsgaii", NSGAIISamplerConfig)):
    ConfigStore.instance().store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="xcomp")
