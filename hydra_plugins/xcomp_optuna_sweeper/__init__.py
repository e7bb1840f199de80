"""A Hydra sweeper on current Optuna (5.x), standing in for the official `hydra-optuna-sweeper`.

Why it exists: hydra-optuna-sweeper 1.3.0 pins ``optuna<3`` (2.10, of 2021), and Optuna 2.10's RDB storage fails on
SQLAlchemy 2 (what MLflow 3 installs), so it cannot share a study over SQLite or PostgreSQL here. This plugin
accepts the official plugin's config keys (``sampler``, ``direction``, ``storage``, ``study_name``, ``n_trials``,
``n_jobs``, ``max_failure_rate``, ``params`` with ``interval`` / ``range`` / ``choice``, ``custom_search_space``), so
configs move to the official plugin unchanged once it supports current Optuna (dropping the keys it adds:
``heartbeat_interval``, ``grace_period``, ``trial_key``, ``enqueue``).

What it adds: the trials run through `Study.optimize` (Optuna's own loop: heartbeats, stale-trial retries, NaN and
exceptions as FAIL), one Hydra job per trial through the configured launcher, with the trial number as the job
number; ``n_trials`` counts the *study's* trials, so a restarted search or several workers on one storage stop at
``n_trials`` in total and never repeat a finished trial.
"""
