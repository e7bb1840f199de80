"""Hydra callback that makes a multirun one MLflow parent run with a child per job.

`on_multirun_start` creates the experiment and the parent once, before any job starts (so parallel jobs do not
race on creating them), and leaves the parent's id in the sweep folder for the jobs. A sweep started again with
the same command and configs resumes the same parent. `on_multirun_end` logs the summary table (one row per
child) to the parent, prints it, and exits non-zero when a job failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from xcomp.errors import XCompError
from xcomp.tracking import Tracker, fingerprint

PARENT_FILE = "mlflow_parent_run_id"
"""File in the sweep folder holding the parent run's id."""
METRIC_COLUMNS = ("accuracy", "accuracy_se", "token_layers_ratio", "prefill_flops_ratio", "kv_cache_bytes_ratio")
SUMMARY_COLUMNS = (
    "status", *METRIC_COLUMNS, *(f"val.{m}" for m in METRIC_COLUMNS),
    "seconds.vision", "seconds.scoring", "seconds.generate", "seconds.job", "error",
)  # fmt: skip
"""Columns of the printed summary where present (the logged summary.csv has every metric)."""
SWEEPER_FILES = ("optimization_results.yaml", "trials.csv")
"""What a sweeper leaves in the sweep folder (the Optuna sweeper: best parameters or Pareto front, every trial)."""


def report_command(config: DictConfig) -> str:
    """The command line that made this sweep (as the report states it)."""
    return " ".join(["python run.py -m", *config.hydra.overrides.task])


class MLflowSweep(Callback):
    """Parent run per sweep; summary at its end."""

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.parent_id: str | None = None
        self.original: dict[str, str] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)  # the launcher does so only later; ${hydra:...} needs it
        if not config.logger.enabled:
            return
        try:
            self._start(config)
        except XCompError as error:  # e.g. report.rerun_of names a report with no sweep
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        except Exception as error:  # Hydra would only warn and run the jobs untracked
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"error: MLflow at {config.logger.tracking_uri}: {message}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    def _start(self, config: DictConfig) -> None:
        logger = config.logger
        self.tracker = Tracker(logger.tracking_uri, logger.experiment, logger.artifact_root)
        if config.report is not None and config.report.rerun_of:  # the sweep it repeats, found before any job runs
            from xcomp.reporting.sweep import latest_sweep

            original = latest_sweep(logger.tracking_uri, logger.experiment, config.report.rerun_of)
            self.original = {"rerun_of": config.report.rerun_of, "original": original}
        overrides = list(config.hydra.overrides.task)
        body = OmegaConf.to_container(config, resolve=False)
        body.pop("hydra", None)
        key = fingerprint({"overrides": sorted(overrides), "config": body})
        name = "sweep: " + " ".join(overrides)
        self.parent_id = self.tracker.sweep_parent(key, name, {"overrides": " ".join(overrides)})
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(self.parent_id + "\n")
        print(f"sweep: MLflow parent run {self.parent_id} in experiment {logger.experiment!r} at {logger.tracking_uri}")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.tracker is None:
            return
        summary = self.tracker.summary(self.parent_id)
        failed = int((summary["status"] == "FAILED").sum()) if len(summary) else 0
        running = int((summary["status"] == "RUNNING").sum()) if len(summary) else 0  # other workers' jobs
        sweep_dir = Path(config.hydra.sweep.dir)
        for name in SWEEPER_FILES:
            if (sweep_dir / name).is_file():
                self.tracker.client.log_artifact(self.parent_id, str(sweep_dir / name))
        if (sweep_dir / "trials.csv").is_file():
            import pandas as pd

            trials = pd.read_csv(sweep_dir / "trials.csv")
            if "pareto" in trials:
                pareto = trials[trials["pareto"]].drop(columns=["pareto"])
                self.tracker.client.log_text(self.parent_id, pareto.to_markdown(index=False), "pareto.md")
        self.tracker.finish_sweep(self.parent_id, summary, failed)
        if config.report is not None:
            self._render(config)
        shown = summary.attrs.get("axes", []) + [c for c in SUMMARY_COLUMNS if c in summary.columns]
        print(summary[shown].to_markdown(index=False, floatfmt=".3f") if len(summary) else "(no jobs)")
        others = f", {running} running (other workers)" if running else ""
        print(f"sweep: {len(summary) - failed - running} finished, {failed} failed{others}; parent run {self.parent_id}")
        if failed:
            sys.exit(1)

    def _render(self, config: DictConfig) -> None:
        """Render the experiment's report from MLflow into `paths.reports/<report.name>` and log it to the parent."""
        from xcomp.reporting.render import render

        report = config.report
        out = Path(config.paths.reports) / report.name
        claims = json.dumps(OmegaConf.to_container(report.claims, resolve=True))
        settings = {"title": report.title, "command": report_command(config), "claims": claims, "cost": report.cost,
                    "numbers": json.dumps(list(report.numbers)), **self.original}  # fmt: skip
        for key, value in {"name": report.name, "notebook": report.notebook, **settings}.items():
            self.tracker.client.set_tag(self.parent_id, f"xcomp.report.{key}", value)
        logger = config.logger
        parameters = {"tracking_uri": logger.tracking_uri, "experiment": logger.experiment, "sweep": self.parent_id}
        try:
            path = render(report.notebook, out, {**parameters, **settings})
        except XCompError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        self.tracker.client.log_artifacts(self.parent_id, str(out), "report")
        print(f"report: {path}")
