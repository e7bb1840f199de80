"""MLflow tracking of runs and sweeps: one run per job, one parent run per sweep, lookup of finished jobs.

A job is identified by a *fingerprint* (a hash of what it uses: its resolved config without what does not change
its result, as the caller decides), so a sweep run again after a kill skips the jobs that finished and reruns the
rest under the same parent, and an arm that is the same job as another's records that it reuses its run. A sweep is
identified by its *key* (the hash of its command's overrides and base config), so running it again resumes its
parent run instead of starting another. Only MLflow's own client API is used; nothing here knows Hydra.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import subprocess
import tempfile
import time
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

TAG_FINGERPRINT = "xcomp.fingerprint"
"""Tag of a job run: its config fingerprint."""
TAG_SWEEP_KEY = "xcomp.sweep_key"
"""Tag of a sweep's parent run: the sweep's key."""
TAG_PARENT = "mlflow.parentRunId"
"""MLflow's own nesting tag (the UI shows children under their parent)."""
TAG_ERROR = "xcomp.error"
"""Tag of a failed run: its one-line error."""
TAG_OVERRIDES = "xcomp.overrides"
"""Tag of a job run: its overrides as JSON (a list of `key=value`)."""
TAG_REUSES = "xcomp.reuses"
"""Tag of an arm's run whose results are those of another arm's run of the same job: that run's id."""


PARAMS_PER_BATCH = 100
"""Params per `log_batch` call (MLflow's limit)."""
METRICS_PER_BATCH = 1000
"""Metrics per `log_batch` call (MLflow's limit)."""
PARAM_LENGTH = 6000
"""Longest param value MLflow stores; longer ones are cut."""
ERROR_LENGTH = 5000
"""Longest error message kept in `TAG_ERROR`."""
VERSIONED = ("xcomp", "torch", "transformers")
"""Packages whose versions a job run records (``version.<package>`` tags)."""

RUN_NAME_LENGTH = 250
"""Longest run name MLflow stores (a column of VARCHAR(250): PostgreSQL refuses longer ones, SQLite does not)."""


def run_name(text: str) -> str | None:
    """``text`` as a run name: cut to what MLflow stores (the full overrides are in the run's tags)."""
    return (text[: RUN_NAME_LENGTH - 1] + "…" if len(text) > RUN_NAME_LENGTH else text) or None


def fingerprint(data: Mapping) -> str:
    """A stable hash of a JSON-able mapping (keys sorted)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def arm_overrides(run) -> list[str]:
    """The overrides a job run was started with (its `TAG_OVERRIDES`)."""
    return json.loads(run.data.tags.get(TAG_OVERRIDES, "[]"))


def is_arm(run, overrides: list[str]) -> bool:
    """Whether ``run`` is the run of the arm started with ``overrides`` (in any order)."""
    return sorted(arm_overrides(run)) == sorted(overrides)


def flatten(data: Mapping, prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {"a.b.c": "value"} (lists as JSON), for `log_params`."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return out


def git_state(root: str | Path) -> dict[str, str]:
    """Commit of the checkout at ``root`` and whether it has uncommitted changes (empty outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git.commit": commit.stdout.strip(), "git.dirty": str(bool(dirty.stdout.strip()))}


def masked(url: Any) -> str:
    """A storage URL without its password ("in memory" for None)."""
    from sqlalchemy.engine import make_url

    return "in memory" if url is None else make_url(str(url)).render_as_string(hide_password=True)


def store_lock(tracking_uri: str) -> contextlib.AbstractContextManager:
    """A file lock beside a SQLite store (``<file>.lock``), held while a process opens it: the first query on a
    new store runs MLflow's schema migration, and two processes migrating at once fail (one with ``duplicate
    column name: step``, seen with two sweeps started together). Other stores need no lock."""
    from filelock import FileLock

    if not tracking_uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{path}.lock")


class Tracker:
    """An MLflow experiment at a tracking URI, with the sweep and job bookkeeping of this module."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: str | None = None):
        import mlflow

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "creating tables" on a new store
        self.tracking_uri = tracking_uri
        with store_lock(tracking_uri):  # opening a new store creates (migrates) its tables
            self.client = mlflow.MlflowClient(tracking_uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                location = Path(artifact_root).resolve().as_uri() if artifact_root else None
                try:
                    self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
                except mlflow.exceptions.MlflowException:  # created meanwhile by a job on a shared server
                    self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
            else:
                self.experiment_id = found.experiment_id

    # ------------------------------------------------------------------ lookup
    def _search(self, filters: list[str], statuses: tuple[str, ...] | None = None) -> list:
        runs = self.client.search_runs([self.experiment_id], " and ".join(filters), max_results=1000)
        return [r for r in runs if statuses is None or r.info.status in statuses]

    def job_run(
        self, job_fingerprint: str, parent_id: str | None, overrides: list[str]
    ) -> tuple[object | None, object | None]:
        """(a FINISHED run of this job, an unfinished run of this arm to resume) under ``parent_id`` (None: top
        level). An arm is a job under its ``overrides`` (in any order): the FINISHED run is this arm's own when it
        has one, else a run of another arm that computed the job (not one that reused it; see `reuse_job`)."""
        runs = self._search([f"tags.`{TAG_FINGERPRINT}` = '{job_fingerprint}'"])
        runs = [r for r in runs if r.data.tags.get(TAG_PARENT) == parent_id]
        finished = [r for r in runs if r.info.status == "FINISHED"]
        finished = [r for r in finished if is_arm(r, overrides) or TAG_REUSES not in r.data.tags]
        finished.sort(key=lambda r: not is_arm(r, overrides))
        unfinished = [r for r in runs if r.info.status != "FINISHED" and is_arm(r, overrides)]
        return (finished[0] if finished else None), (unfinished[0] if unfinished else None)

    def children(self, parent_id: str) -> list:
        return self._search([f"tags.`{TAG_PARENT}` = '{parent_id}'"])

    # ------------------------------------------------------------------ sweeps
    def sweep_parent(self, sweep_key: str, name: str, tags: Mapping[str, str]) -> str:
        """The run id of the sweep's parent: the earlier one with this key (set RUNNING again) or a new one."""
        earlier = self._search([f"tags.`{TAG_SWEEP_KEY}` = '{sweep_key}'"])
        if earlier:
            run_id = earlier[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name(name), tags={**tags, TAG_SWEEP_KEY: sweep_key})
        # Workers of one distributed search start the same sweep at once: all keep the first parent created.
        created = self._search([f"tags.`{TAG_SWEEP_KEY}` = '{sweep_key}'"])
        first = min(created, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id
        if first != run.info.run_id:
            self.client.delete_run(run.info.run_id)
        return first

    def summary(self, parent_id: str) -> pd.DataFrame:
        """One row per child job: the overrides that vary between jobs first (listed in ``attrs["axes"]``), then
        status, metrics, error."""
        import pandas as pd

        rows, axes = [], {}
        for run in self.children(parent_id):
            pairs = (o.split("=", 1) for o in arm_overrides(run))
            overrides = {key.lstrip("+~"): value for key, value in pairs}
            axes.update(dict.fromkeys(overrides))
            rows.append({
                **overrides,
                "status": run.info.status,
                **run.data.metrics,
                "error": run.data.tags.get(TAG_ERROR, ""),
                "run_id": run.info.run_id,
            })
        frame = pd.DataFrame(rows)
        for axis in axes:  # override values are strings; numbers sort as numbers
            with contextlib.suppress(ValueError, TypeError):
                frame[axis] = pd.to_numeric(frame[axis])
        varied = [k for k in axes if frame[k].nunique(dropna=False) > 1]
        columns = varied + [c for c in frame.columns if c not in axes]
        if not rows:
            return frame
        frame = frame[columns].sort_values(varied or ["run_id"]).reset_index(drop=True)
        frame.attrs["axes"] = varied
        return frame

    def finish_sweep(self, parent_id: str, summary: pd.DataFrame, failed: int) -> None:
        """Log the summary table to the parent and close it (FAILED when a job failed)."""
        self.client.log_text(parent_id, summary.to_csv(index=False), "summary.csv")
        self.client.log_text(parent_id, summary.to_markdown(index=False), "summary.md")
        self.client.set_terminated(parent_id, "FAILED" if failed else "FINISHED")

    # ------------------------------------------------------------------ jobs
    def start_job(
        self,
        job_fingerprint: str,
        settings: Mapping,
        overrides: list[str],
        tags: Mapping[str, str],
        unfinished: object | None = None,
        parent_id: str | None = None,
    ) -> str:
        """The run id of a job: its ``unfinished`` run (from `job_run`: a killed or failed attempt) set RUNNING
        again without its error, or a new run named by its ``overrides`` (under ``parent_id``, a sweep's parent).
        Logs the resolved ``settings`` as params (flattened, in batches) and as the artifact config.yaml, and tags
        the run with its fingerprint, overrides, parent, the versions of xcomp, torch and transformers, the git
        state of the checkout, and ``tags`` (what the caller knows of the job: model, method, trial)."""
        from mlflow.entities import Param, RunTag
        from omegaconf import OmegaConf

        client = self.client
        tags = {
            TAG_FINGERPRINT: job_fingerprint,
            TAG_OVERRIDES: json.dumps(overrides),
            "overrides": " ".join(overrides),
            **tags,
            **{f"version.{p}": version(p) for p in VERSIONED},
            **git_state(Path(__file__).parent),  # the checkout xcomp runs from
        }
        if parent_id is not None:
            tags[TAG_PARENT] = parent_id
            tags["sweep_id"] = parent_id
        if unfinished is not None:
            run_id = unfinished.info.run_id
            client.update_run(run_id, status="RUNNING")
            if TAG_ERROR in unfinished.data.tags:
                client.delete_tag(run_id, TAG_ERROR)
        else:
            run_id = client.create_run(self.experiment_id, run_name=run_name(" ".join(overrides))).info.run_id
        config = {k: v for k, v in settings.items() if k != "hydra"}
        params = [Param(k, v[:PARAM_LENGTH]) for k, v in flatten(config).items()]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[i : i + PARAMS_PER_BATCH])
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        client.log_text(run_id, OmegaConf.to_yaml(config), "config.yaml")
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Log ``metrics`` (NaN ones left out) at step 0 and the current time, in batches."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if not math.isnan(v)]
        for i in range(0, len(batch), METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=batch[i : i + METRICS_PER_BATCH])

    def finish_job(
        self, run_id: str, tags: Mapping[str, str], predictions: list[dict], metrics: Mapping[str, float]
    ) -> None:
        """End a job's run FINISHED with its results: ``tags`` (what the model ran with), one JSON line per
        prediction (the artifact predictions.jsonl) and ``metrics``."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        self.client.log_text(run_id, "\n".join(json.dumps(p) for p in predictions) + "\n", "predictions.jsonl")
        self.log_metrics(run_id, metrics)
        self.client.set_terminated(run_id, "FINISHED")

    def predictions(self, run) -> list[dict] | None:
        """The predictions.jsonl of a FINISHED job run, or None when it cannot be read (an older run, moved
        artifacts)."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as folder:
            try:
                path = Path(self.client.download_artifacts(run.info.run_id, "predictions.jsonl", folder))
                return [json.loads(line) for line in path.read_text().splitlines() if line]
            except (OSError, ValueError, MlflowException):
                return None

    def reuse_job(self, run_id: str, source, predictions: list[dict]) -> None:
        """End the arm's run ``run_id`` FINISHED with the results of ``source``, a FINISHED run of the same job
        (fingerprint) under other overrides: its metrics, its ``predictions`` (`predictions`) and the tags it
        finished with, and `TAG_REUSES` naming it. An arm whose settings differ from another's only in keys no
        component reads is computed once (as the Optuna sweeper answers a repeated trial from the first)."""
        own = self.client.get_run(run_id).data.tags
        tags = {k: v for k, v in source.data.tags.items() if k not in own and not k.startswith("mlflow.")}
        self.finish_job(run_id, {**tags, TAG_REUSES: source.info.run_id}, predictions, source.data.metrics)

    def fail_job(self, run_id: str, message: str) -> None:
        """End a job's run FAILED, its (one-line) error in `TAG_ERROR`."""
        self.client.set_tag(run_id, TAG_ERROR, message[:ERROR_LENGTH])
        self.client.set_terminated(run_id, "FAILED")
