"""A sweep's jobs as a pandas table, straight from MLflow (`mlflow.search_runs`), for the report notebooks.

Each child run of a sweep's parent is one arm: its overrides (the `xcomp.overrides` tag) name it, the ones that
differ between arms are the "what varied" columns, and its metrics are the job's (`xcomp.evaluation.runner.summarize`).
"""

from __future__ import annotations

import contextlib
import json
import tempfile

import mlflow
import numpy as np
import pandas as pd

from xcomp.errors import XCompError
from xcomp.tracking import TAG_OVERRIDES, TAG_PARENT, TAG_SWEEP_KEY

REPORT_TAG = "xcomp.report."
"""Prefix of the parent-run tags that record what its report was rendered with."""
COST_COLUMNS = ("token_layers_ratio", "prefill_flops_ratio", "kv_cache_bytes_ratio")
"""Cost of an arm relative to dense over the same sampled frames."""


def sweep_runs(
    tracking_uri: str, experiment: str, parent_id: str, params: tuple[str, ...] = (), tags: tuple[str, ...] = ()
) -> pd.DataFrame:
    """One row per child run: ``arm`` (its varied overrides), the varied axes, ``status``, every metric under its
    own name, the logged config values ``params`` as numbers (NaN where a run has none: e.g. a `train=none`
    arm's ``train.data.fraction``) and the run tags ``tags`` as text; ``attrs["axes"]`` lists the axes."""
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(
        experiment_names=[experiment], filter_string=f"tags.`{TAG_PARENT}` = '{parent_id}'", max_results=50_000
    )
    if runs.empty:
        raise XCompError(f"sweep {parent_id} has no child runs in experiment {experiment!r} at {tracking_uri}")
    overrides = [
        dict(o.lstrip("+~").split("=", 1) for o in json.loads(tag or "[]")) for tag in runs[f"tags.{TAG_OVERRIDES}"]
    ]
    axes = pd.DataFrame(overrides, index=runs.index)
    for column in axes:
        with contextlib.suppress(ValueError, TypeError):
            axes[column] = pd.to_numeric(axes[column])
    varied = [c for c in axes if axes[c].nunique(dropna=False) > 1]
    metrics = runs[[c for c in runs if c.startswith("metrics.")]].rename(columns=lambda c: c[len("metrics.") :])
    logged = pd.DataFrame({p: pd.to_numeric(runs.get(f"params.{p}"), errors="coerce") for p in params}, index=runs.index)
    tagged = pd.DataFrame({t: runs.get(f"tags.{t}") for t in tags}, index=runs.index)
    table = pd.concat([axes[varied], runs[["run_id", "status"]], logged, tagged, metrics], axis=1)
    arms = [" ".join(f"{k}={row[k]}" for k in varied if k in row) or "job" for row in overrides]  # a search's
    table.insert(0, "arm", arms)  # trials can differ in which overrides they have (e.g. schedule.exponent)
    table = table.sort_values(varied or ["run_id"]).reset_index(drop=True)
    table.attrs["axes"] = varied
    return table


def latest_sweep(tracking_uri: str, experiment: str, name: str) -> str:
    """The id of the latest sweep parent that rendered report ``name``, else that was started with
    ``+experiment=name`` (a sweep stopped before its end has not rendered yet)."""
    mlflow.set_tracking_uri(tracking_uri)
    for condition in (f"tags.`{REPORT_TAG}name` = '{name}'", f"tags.overrides LIKE '%experiment={name}%'"):
        parents = mlflow.search_runs(
            experiment_names=[experiment], filter_string=condition, order_by=["attributes.start_time DESC"]
        )
        if not parents.empty and f"tags.{TAG_SWEEP_KEY}" in parents:
            parents = parents[parents[f"tags.{TAG_SWEEP_KEY}"].notna()]
            if not parents.empty:
                return str(parents.iloc[0]["run_id"])
    raise XCompError(f"no sweep of +experiment={name} in experiment {experiment!r} at {tracking_uri}")


def pareto_front(table: pd.DataFrame, cost: str, score: str) -> pd.Series:
    """Whether each row is on the front: no other row has lower-or-equal cost and higher-or-equal score, one strictly."""
    c, s = table[cost].to_numpy(), table[score].to_numpy()
    dominated = [bool(np.any((c <= c[i]) & (s >= s[i]) & ((c < c[i]) | (s > s[i])))) for i in range(len(table))]
    return pd.Series(~np.array(dominated, dtype=bool), index=table.index)


def arms_table(table: pd.DataFrame) -> pd.DataFrame:
    """The report's main table: per arm accuracy ± SE (binomial, and clustered by video where logged), per-family
    accuracy and a benchmark's macro mean, costs vs dense, seconds per stage (breakdowns: `breakdown_tables`)."""
    families = sorted(c for c in table if c.startswith("accuracy.") and c.count(".") == 1 and not c.endswith("_se"))
    seconds = sorted(c for c in table if c.startswith("seconds."))
    columns = ["arm", "status", "accuracy", "accuracy_se", "accuracy_se_cluster", *families, *COST_COLUMNS, *seconds,
               "unparsed", "questions"]  # fmt: skip
    arms = table[[c for c in columns if c in table]].copy()
    if "questions" in arms:
        arms["questions"] = arms["questions"].astype("Int64")
    return arms


def breakdown_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per breakdown field of a benchmark (``accuracy.<field>.<value>``): arms x values of the accuracy."""
    columns = [c for c in table if c.startswith("accuracy.") and c.count(".") == 2 and not c.endswith("_se")]
    fields: dict[str, list[str]] = {}
    for column in sorted(columns):
        fields.setdefault(column.split(".")[1], []).append(column)
    return {
        field: table.set_index("arm")[cols].rename(columns=lambda c: c.split(".", 2)[2])
        for field, cols in fields.items()
    }


def reproduction(rerun: pd.DataFrame, original: pd.DataFrame, metric: str = "accuracy", z: float = 2.0) -> pd.DataFrame:
    """Per arm finished in both sweeps (matched by name): ``metric`` ± SE in each, their difference, its combined SE
    sqrt(se_a² + se_b²) and whether the difference is within ``z`` of those (the rerun reproduces the arm);
    ``attrs["missing"]`` lists the arms finished in only one of the two."""
    se = f"{metric}_se"
    sides = [t[t["status"] == "FINISHED"].set_index("arm")[[metric, se]] for t in (rerun, original)]
    both = sides[0].join(sides[1], lsuffix=" (rerun)", rsuffix=" (original)", how="inner")
    difference = both[f"{metric} (rerun)"] - both[f"{metric} (original)"]
    combined = np.hypot(both[f"{se} (rerun)"], both[f"{se} (original)"])
    table = both.assign(difference=difference, combined_se=combined, within=difference.abs() <= z * combined)
    table = table.reset_index()
    table.attrs["missing"] = sorted(set(sides[0].index) ^ set(sides[1].index))
    return table


def family_spread(table: pd.DataFrame, chance: float) -> pd.DataFrame:
    """Per question family: lowest and highest accuracy over the arms, and whether the family saturates (every arm
    >= 0.95), sits at chance (no arm above ``chance`` by 2 SE) or discriminates."""
    rows = []
    for column in arms_table(table).columns:
        if not column.startswith("accuracy.") or column + "_se" not in table:
            continue
        scores = table[column]
        best = table.loc[scores.idxmax()]
        if scores.min() >= 0.95:
            verdict = "saturates"
        elif best[column] - 2 * best[column + "_se"] <= chance:
            verdict = "at chance"
        else:
            verdict = "discriminates"
        rows.append({"family": column.removeprefix("accuracy."), "lowest": scores.min(), "highest": scores.max(),
                     "best arm": best["arm"], "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows)


def report_settings(tracking_uri: str, parent_id: str) -> dict[str, str]:
    """What the sweep's end rendered its report with (name, notebook and the notebook's parameters: title,
    command, claims as JSON, cost), from the parent's ``xcomp.report.*`` tags."""
    tags = mlflow.MlflowClient(tracking_uri).get_run(parent_id).data.tags
    return {key.removeprefix(REPORT_TAG): value for key, value in tags.items() if key.startswith(REPORT_TAG)}


def study_trials(tracking_uri: str, parent_id: str) -> pd.DataFrame:
    """An Optuna search's study, one row per trial (`trials.csv` of its parent run; empty for a plain sweep)."""
    client = mlflow.MlflowClient(tracking_uri)
    if not any(a.path == "trials.csv" for a in client.list_artifacts(parent_id)):
        return pd.DataFrame()
    with tempfile.TemporaryDirectory() as folder:
        return pd.read_csv(client.download_artifacts(parent_id, "trials.csv", folder))
