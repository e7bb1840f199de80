# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# Report of an Optuna search, read from MLflow: every trial is a child run of the search's parent, scored on the
# split the search optimised (validation, `val.*` metrics; the test split where trials logged it too). Per split:
# the trials, their accuracy-vs-cost Pareto front, and the reference trial (the first, enqueued one) on it.
# Rendered at the end of `python run.py +experiment=NAME` or again by `xcomp report NAME`.

# %% tags=["parameters"]
# xcomp.reporting.parameters.ReportParameters: the same names and defaults in every notebook (tests/test_report.py)
tracking_uri = "sqlite:///mlflow.db"  # MLflow store holding the search
experiment = "xcomp"  # MLflow experiment name
sweep = ""  # the search's parent run id
title = "Sweep report"  # heading of the report (the search experiment names its own)
command = ""  # the command that made the search
claims = "[]"  # JSON list of the experiment's claims (xcomp.reporting.verdict.Claim fields)
chance = 0.25  # accuracy of guessing (four options per question)
cost = "token_layers_ratio"  # the cost metric of the fronts (on the test suite; `val.<cost>` on validation)
numbers = "[]"  # unused here (the sweep notebook's curves); accepted so both notebooks take the same parameters
rerun_of = ""  # unused here (the sweep notebook's reruns); every notebook takes the same parameters
original = ""  # unused here, as rerun_of
reference = 0  # trial number of the reference point (the sweeper's first enqueued parameters)
output_dir = "."  # where report.md and its PNGs go

# %%
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from xcomp.reporting.sweep import family_spread, pareto_front, study_trials, sweep_runs
from xcomp.reporting.verdict import Claim, check

runs = sweep_runs(tracking_uri, experiment, sweep, tags=("schedule.kept",))
done = runs[runs["status"] == "FINISHED"].copy()
study = study_trials(tracking_uri, sweep)  # empty until the search ends and logs trials.csv
repeats = study["user_attrs_duplicate_of"].notna().sum() if "user_attrs_duplicate_of" in study else 0
counted = (f"; the study has {len(study)} trials, {repeats} of them repeats of an earlier trial's parameters that "
           f"took its values without a job of their own" if len(study) else "")
display(Markdown(f"# {title}\n\nSearch `{sweep}` in MLflow experiment `{experiment}` ({tracking_uri}): "
                 f"{len(done)} of {len(runs)} trial jobs finished{counted}.\n\nCommand: `{command or '(not recorded)'}`"))
verdicts = [check(runs, Claim(**claim)) for claim in json.loads(claims)]
if verdicts:
    display(Markdown("## Verdicts\n\n" + "\n".join(v.line() for v in verdicts)))

# %% [markdown]
# ## Trials

# %%
SPLITS = {s: p for s, p in {"validation": "val.", "test": ""}.items() if f"{p}accuracy" in done and f"{p}{cost}" in done}
for split, prefix in SPLITS.items():
    done[f"front ({split})"] = pareto_front(done, f"{prefix}{cost}", f"{prefix}accuracy")
columns = ["trial", "schedule.kept", *(f"{p}{m}" for p in SPLITS.values() for m in (cost, "accuracy", "accuracy_se")),
           *(c for c in done if c.startswith("front ("))]  # fmt: skip
trials = done[[c for c in columns if c in done]].sort_values("trial")
display(Markdown(trials.to_markdown(index=False, floatfmt=".3f")))
display(Markdown(f"`schedule.kept`: visual tokens per frame entering each decoder layer; `val.*`: the validation "
                 f"split the search optimised (its maximum over trials is biased upward: test the chosen schedules "
                 f"on the test split before claiming them); unprefixed: the test split, where logged. Trial "
                 f"{reference} is the reference (enqueued before the search's own trials)."))

# %% [markdown]
# ## Accuracy against cost: the fronts

# %%
fig, axes = plt.subplots(1, len(SPLITS), figsize=(5.5 * len(SPLITS), 4), sharey=True, squeeze=False)
for ax, (split, prefix) in zip(axes[0], SPLITS.items()):
    x, y = f"{prefix}{cost}", f"{prefix}accuracy"
    ax.errorbar(done[x], done[y], yerr=done.get(f"{y}_se"), fmt="o", alpha=0.6, label="trials")
    line = done[done[f"front ({split})"]].sort_values(x)
    ax.plot(line[x], line[y], "-", color="C3", label="Pareto front")
    ref = done[done["trial"] == reference]
    ax.plot(ref[x], ref[y], "*", color="C2", markersize=14, label=f"reference (trial {reference})")
    ax.set(xlabel=f"{cost} ({split})", title=split)
    ax.legend(fontsize=7)
axes[0][0].set_ylabel("accuracy")
fig.tight_layout()
fig.savefig(Path(output_dir) / "fronts.png", dpi=110)
plt.close(fig)
display(Markdown("![fronts](fronts.png)"))

# %% [markdown]
# ## Does the suite discriminate?

# %%
for split, prefix in SPLITS.items():
    names = {c: c.removeprefix(prefix) for c in done if c.startswith(f"{prefix}accuracy.") and "_by_" not in c}
    spread = family_spread(done[["arm", *names]].rename(columns=names), chance)
    shown = spread.to_markdown(index=False, floatfmt=".3f") if len(spread) else "no per-family accuracy with its SE."
    display(Markdown(f"{split}:\n\n{shown}"))
