"""The Optuna sweeper: the study's trials run as Hydra jobs (see the package docstring)."""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from xcomp.tracking import masked

log = logging.getLogger(__name__)

DUPLICATE = "duplicate_of"
"""User attribute of a trial answered with the values of an earlier trial with its parameters (`deduplicate`)."""
SURPLUS = "surplus"
"""User attribute of a trial pruned unrun because other workers had already started the study's last trials."""
RESULTS = "optimization_results.yaml"
"""Written to the sweep folder at the end, as the official plugin does: best parameters, or the Pareto front."""
STORAGE_ATTEMPTS = 5
"""Tries at opening the study's storage when workers started together collide creating its tables."""
TRIALS = "trials.csv"
"""Written beside it: every trial of the study (`Study.trials_dataframe`) with a `pareto` column."""


class SearchError(CompactHydraException):
    """A search that cannot start; Hydra prints the message alone and exits 1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def distribution(override: Override) -> BaseDistribution | str:
    """The Optuna distribution of a sweep override, or the value of a plain one (a parameter fixed for every trial).
    As in the official plugin, ``range(a, b, step)`` includes ``b`` and ints stay ints."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        if any(isinstance(x, float) for x in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    log_scale = "log" in value.tags
    if isinstance(value.start, int) and isinstance(value.end, int):
        return IntDistribution(value.start, value.end, log=log_scale)
    return FloatDistribution(value.start, value.end, log=log_scale)


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward ``n_trials``: not a stale trial that was retried, not a surplus one."""
    retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    return [
        t for t in trials
        if t.number not in retried and not t.user_attrs.get(SURPLUS) and t.state != TrialState.WAITING
    ]  # fmt: skip


class OptunaSweeper(Sweeper):
    """Runs an Optuna study whose trials are jobs of the configured Hydra launcher."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: DictConfig | None,
        custom_search_space: str | None,
        heartbeat_interval: int,
        grace_period: int | None,
        trial_key: str | None,
        enqueue: ListConfig | None = None,
        deduplicate: bool = False,
    ) -> None:
        # Heartbeats and stale-trial retries are "experimental" in Optuna since 2.x; used on purpose here (from worker
        # threads, where `catch_warnings` is not safe; Hydra's plugin scan would undo a module-level filter).
        warnings.filterwarnings("ignore", category=ExperimentalWarning, module=__name__)
        self.sampler, self.direction, self.storage, self.study_name = sampler, direction, storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = OmegaConf.to_container(params) if params else {}
        self.custom_search_space, self.custom = custom_search_space, None
        self.heartbeat_interval, self.grace_period, self.trial_key = heartbeat_interval, grace_period, trial_key
        self.enqueue = OmegaConf.to_container(enqueue) if enqueue else []
        self.deduplicate = deduplicate
        self.failed: tuple[int, int] | None = None

    def _check(self) -> None:
        """The settings, checked in `setup` (an error raised while Hydra instantiates would come wrapped)."""
        direction = self.direction
        self.directions = [direction] if isinstance(direction, str) else list(direction)
        if not self.directions or any(d not in ("minimize", "maximize") for d in self.directions):
            raise SearchError(f"direction must be minimize, maximize or a list of them, got {direction}")
        if self.n_trials < 1 or self.n_jobs < 1:
            raise SearchError(f"n_trials and n_jobs must be >= 1, got {self.n_trials} and {self.n_jobs}")
        if not 0 <= self.max_failure_rate <= 1:
            raise SearchError(f"max_failure_rate must lie in [0, 1], got {self.max_failure_rate}")
        if self.heartbeat_interval < 1 or (self.grace_period is not None and self.grace_period <= self.heartbeat_interval):
            raise SearchError("heartbeat_interval must be >= 1 s and grace_period longer than it")
        if self.custom_search_space:
            try:
                self.custom = get_method(self.custom_search_space)
            except Exception as error:
                raise SearchError(f"custom_search_space {self.custom_search_space!r}: {error}") from None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        self._check()
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        if self.n_jobs > 1 and isinstance(self.launcher, BasicLauncher):
            raise SearchError("n_jobs > 1 runs trials at once: choose a parallel launcher (hydra/launcher=joblib)")

    def sweep(self, arguments: list[str]) -> None:
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in self.params.items()] + arguments)
        space, fixed = {}, {}
        for override in parsed:
            value = distribution(override)
            (space if isinstance(value, BaseDistribution) else fixed)[override.get_key_element()] = value
        if not space and self.custom is None:
            raise SearchError("the search space is empty: set hydra.sweeper.params (interval, range, choice)")
        study = self._study()
        for params in self.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            fail_stale_trials(study)  # a killed worker's trials, once their heartbeat is older than grace_period
        left = self.n_trials - len(counted(study.get_trials(deepcopy=False)))
        log.info("Study %s at %s: %d of %d trials to run", study.study_name, masked(self.storage), max(left, 0),
                 self.n_trials)  # fmt: skip
        if left > 0:
            study.optimize(
                lambda trial: self._trial(study, trial, space, fixed), n_trials=left, n_jobs=self.n_jobs,
                catch=(Exception,), callbacks=[self._after_trial],
            )  # fmt: skip
        self._write_results(study)
        if self.failed is not None:
            failed, done = self.failed
            log.error("search stopped: %d of %d trials failed (max_failure_rate %s)", failed, done,
                      self.max_failure_rate)  # fmt: skip

    def _study(self) -> optuna.Study:
        for attempt in range(STORAGE_ATTEMPTS):
            try:
                return self._open_study()
            except SearchError:
                raise
            except Exception as error:  # an unreachable database, a malformed URL, ...
                if attempt + 1 == STORAGE_ATTEMPTS or not any(m in str(error) for m in ("duplicate key", "already exists")):
                    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    raise SearchError(f"cannot open the study storage {masked(self.storage)}: {message}") from None
                time.sleep(1.0)  # workers starting together on a new database: another one is creating the tables

    def _open_study(self) -> optuna.Study:
        storage = self.storage
        if storage is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                storage = RDBStorage(
                    str(storage), heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
                )  # fmt: skip
        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                    directions=self.directions, load_if_exists=True)  # fmt: skip
        found = [d.name.lower() for d in study.directions]
        if found != self.directions:
            raise SearchError(f"study {study.study_name!r} exists with directions {found}, not {self.directions}")
        return study

    def _trial(self, study: optuna.Study, trial: optuna.Trial, space: dict, fixed: dict) -> Any:
        for name, dist in space.items():
            suggest(trial, name, dist)
        if self.custom is not None:
            self.custom(self.config, trial)
        trials = study.get_trials(deepcopy=False)
        if sum(t.number < trial.number for t in counted(trials)) >= self.n_trials:
            trial.set_user_attr(SURPLUS, True)  # another worker started the study's last trial first
            raise optuna.TrialPruned(f"the study already has its {self.n_trials} trials")
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        same = [t for t in trials if t.state == TrialState.COMPLETE and t.params == trial.params] if self.deduplicate else []
        if same:
            trial.set_user_attr(DUPLICATE, same[0].number)
            log.info("trial %d has the parameters of trial %d: its values, no job", trial.number, same[0].number)
            return same[0].values
        original = RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[trial.number])
        number = trial.number if original is None else original  # a retry resumes the killed trial's job
        overrides = [f"{k}={v}" for k, v in {**trial.params, **fixed}.items()]
        if self.trial_key:
            overrides.append(f"++{self.trial_key}={number}")
        (result,) = self.launcher.launch([overrides], initial_job_idx=number)
        return result.return_value  # re-raises the job's exception: the trial FAILs

    def _after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Stop when the study has its trials (other workers' running ones included) or too many failed."""
        trials = counted(study.get_trials(deepcopy=False))
        done = [t for t in trials if t.state.is_finished()]
        failed = sum(t.state == TrialState.FAIL for t in done)
        if done and failed / len(done) > self.max_failure_rate:
            self.failed = (failed, len(done))
            study.stop()
        if len(trials) >= self.n_trials:
            study.stop()

    def _write_results(self, study: optuna.Study) -> None:
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        best = study.best_trials if complete else []
        if len(self.directions) == 1:
            results = {"name": "optuna", "best_params": best[0].params, "best_value": best[0].value} if best else {}
        else:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in best]}
        folder = Path(self.config.hydra.sweep.dir)
        folder.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), folder / RESULTS)
        frame = study.trials_dataframe()
        if len(frame):
            frame["pareto"] = frame["number"].isin([t.number for t in best])
        frame.to_csv(folder / TRIALS, index=False)
