"""The search spaces of `search=...` configs: functions the Optuna sweeper calls to suggest the parameters that
depend on others (`hydra.sweeper.custom_search_space`)."""

from __future__ import annotations

from omegaconf import DictConfig


def schedule_space(config: DictConfig, trial) -> None:
    """The parametric schedule's layers for the job's model: `start` in [0, L - 2], `end` after it (up to L, the
    decay then ends past the last layer), and the exponent only for the power shape."""
    from xcomp.model.convert import load_config

    layers = load_config(config.model.path).num_layers
    start = trial.suggest_int("schedule.start", 0, layers - 2)
    trial.suggest_int("schedule.end", start + 1, layers)
    if trial.params["schedule.shape"] == "power":
        trial.suggest_float("schedule.exponent", 0.5, 3.0)


def schedule_space_within_budget(config: DictConfig, trial) -> None:
    """`schedule_space`, pruning (unrun) a schedule whose visual token-layers exceed ``search.budget`` of dense:
    the single-objective search for the best accuracy under a budget. The cost is the schedule's, known before
    any training (`CompressionSchedule.token_layer_ratio`)."""
    import optuna

    from xcomp.compression.schedule import CompressionSchedule
    from xcomp.model.convert import load_config

    schedule_space(config, trial)
    model = load_config(config.model.path)
    params = {k.removeprefix("schedule."): v for k, v in trial.params.items() if k.startswith("schedule.")}
    ratio = CompressionSchedule.parametric(model.num_layers, model.tokens_per_frame, **params).token_layer_ratio()
    if ratio > config.search.budget:
        raise optuna.TrialPruned(f"token-layers {ratio:.3f} of dense, over the budget {config.search.budget}")
