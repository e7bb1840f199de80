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
# Report of one sweep, read from MLflow: the verdict on each claim of the experiment, whether the suite
# discriminates, one row per arm (child run), what varied between them, accuracy against cost with the Pareto
# front, accuracy / frame recall by event depth, and curves over the swept numbers; for a rerun
# (`report.rerun_of`), each arm against the original sweep's. Rendered at the end of
# `python run.py +experiment=NAME` or again by `xcomp report NAME`.

# %% tags=["parameters"]
# xcomp.reporting.parameters.ReportParameters: the same names and defaults in every notebook (tests/test_report.py)
tracking_uri = "sqlite:///mlflow.db"  # MLflow store holding the sweep
experiment = "xcomp"  # MLflow experiment name
sweep = ""  # the sweep's parent run id
title = "Sweep report"  # heading of the report
command = ""  # the command that made the sweep
claims = "[]"  # JSON list of the experiment's claims (xcomp.reporting.verdict.Claim fields)
chance = 0.25  # accuracy of guessing (four options per question)
cost = "token_layers_ratio"  # the cost metric of the accuracy-vs-cost plot and its Pareto front
numbers = "[]"  # JSON list of logged config values (train.data.fraction, ...) to draw accuracy curves over
rerun_of = ""  # the report this sweep repeats (e.g. on a fresh data seed), "" for none
original = ""  # that report's sweep (parent run id), whose arms are compared with these
reference = 0  # unused here (a search's reference trial); every notebook takes the same parameters
output_dir = "."  # where report.md and its PNGs go

# %%
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from xcomp.reporting.sweep import (
    arms_table,
    breakdown_tables,
    family_spread,
    pareto_front,
    reproduction,
    sweep_runs,
)
from xcomp.reporting.verdict import Claim, check

runs = sweep_runs(tracking_uri, experiment, sweep, tuple(json.loads(numbers)))
axes = runs.attrs["axes"]
done = runs[runs["status"] == "FINISHED"]
display(Markdown(f"# {title}\n\nSweep `{sweep}` in MLflow experiment `{experiment}` ({tracking_uri}): "
                 f"{len(done)} of {len(runs)} jobs finished.\n\nCommand: `{command or '(not recorded)'}`"))
verdicts = [check(runs, Claim(**claim)) for claim in json.loads(claims)]
if verdicts:
    display(Markdown("## Verdicts\n\n" + "\n".join(v.line() for v in verdicts)))

# %%
if original:
    before = sweep_runs(tracking_uri, experiment, original, tuple(json.loads(numbers)))
    again = reproduction(runs, before)
    worst = again.loc[again["difference"].abs().idxmax()] if len(again) else None
    changed = [(a, b) for a, b in zip(verdicts, (check(before, Claim(**c)) for c in json.loads(claims)))
               if a.outcome != b.outcome]  # fmt: skip
    lines = [f"## Against the original run\n\nThis sweep repeats `{rerun_of}` (sweep `{original}`): "
             f"**{int(again['within'].sum())} of {len(again)} arms within 2 combined SE**"
             + (f" (largest difference: `{worst['arm']}` {worst['difference']:+.3f}, combined SE "
                f"{worst['combined_se']:.3f})" if worst is not None else "")
             + f"; {len(verdicts) - len(changed)} of {len(verdicts)} verdicts the same."]
    if changed:
        lines.append("\n".join(f"- changed: {a.claim.text}: {b.outcome} there, {a.outcome} here" for a, b in changed))
    if again.attrs["missing"]:
        lines.append("Finished in only one of the two: " + ", ".join(f"`{a}`" for a in again.attrs["missing"]))
    display(Markdown("\n\n".join([*lines, again.to_markdown(index=False, floatfmt=".3f")])))

# %% [markdown]
# ## Does the suite discriminate?

# %%
spread = family_spread(done, chance)
if len(spread):
    display(Markdown(spread.to_markdown(index=False, floatfmt=".3f")))
    display(Markdown(f"Per question family: the lowest and highest accuracy over the finished arms; a family "
                     f"*saturates* when every arm scores >= 0.95 and is *at chance* when no arm beats {chance:.2f} "
                     f"by 2 SE."))
else:
    display(Markdown("No per-family accuracy with its standard error in these runs (logged before they were)."))

# %% [markdown]
# ## Arms

# %%
table = arms_table(runs)
display(Markdown(table.to_markdown(index=False, floatfmt=".3f")))
display(Markdown("Accuracy ± binomial SE over the arm's questions (`accuracy_se_cluster`: clustered by video, where "
                 "questions share videos); `*_ratio`: cost relative to dense over the same sampled frames; "
                 "`seconds.*`: mean per question (`seconds.job`: the whole job); `unparsed`: replies that named no "
                 "option."))

# %% [markdown]
# ## Breakdowns (a benchmark's own fields)

# %%
breakdowns = breakdown_tables(done)
for field, grid in breakdowns.items():
    display(Markdown(f"### By `{field}`\n\n" + grid.to_markdown(floatfmt=".3f")))
if not breakdowns:
    display(Markdown("No benchmark breakdowns in these runs."))

# %% [markdown]
# ## What varied

# %%
display(Markdown(runs[["arm", *axes]].to_markdown(index=False) if axes else "One job: nothing varied."))

# %% [markdown]
# ## Accuracy against cost

# %%
LABELS = {"token_layers_ratio": "visual token-layers / dense", "token_layers": "visual token-layers per question"}
if len(done) and cost in done:
    front = pareto_front(done, cost, "accuracy")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(done[cost], done["accuracy"], yerr=done["accuracy_se"], fmt="o", alpha=0.7)
    line = done[front].sort_values(cost)
    ax.plot(line[cost], line["accuracy"], "-", color="C3", label="Pareto front")
    for _, row in done.iterrows():
        ax.annotate(row["arm"], (row[cost], row["accuracy"]), fontsize=7)
    ax.set(xlabel=LABELS.get(cost, cost), ylabel="accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(Path(output_dir) / "accuracy_vs_cost.png", dpi=110)
    plt.close(fig)
    display(Markdown("![accuracy vs cost](accuracy_vs_cost.png)\n\nOn the front: "
                     + ", ".join(f"`{a}`" for a in line["arm"])))

# %% [markdown]
# ## By event depth (needle and locate questions)

# %%
for prefix, label in (("accuracy_by_depth", "accuracy"), ("frame_recall_by_depth", "needle frame recall")):
    columns = sorted(c for c in done if c.startswith(prefix + ".") and not c.endswith("_se"))
    if not columns:
        continue
    grid = done.set_index("arm")[columns].rename(columns={c: c[len(prefix) + 1 :] for c in columns})
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 2, 0.4 * len(grid) + 1.5))
    image = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set(xticks=range(len(columns)), xticklabels=grid.columns, yticks=range(len(grid)), yticklabels=grid.index,
           xlabel="event depth (fraction of the video)", title=label)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(Path(output_dir) / f"{prefix}.png", dpi=110)
    plt.close(fig)
    display(Markdown(f"![{label} by depth]({prefix}.png)\n\n" + grid.to_markdown(floatfmt=".2f")))

# %% [markdown]
# ## Over the swept numbers

# %%
numeric = [a for a in axes if pd.api.types.is_numeric_dtype(done[a]) and done[a].nunique() >= 2]
logged = json.loads(numbers)
for x in numeric + logged:
    others = [a for a in axes if a != x] if x in axes else []
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, rows in done.groupby(others, sort=True) if others else [("", done)]:
        rows = rows.sort_values(x)
        label = " ".join(f"{a}={v}" for a, v in zip(others, key if isinstance(key, tuple) else (key,))) or "accuracy"
        ax.errorbar(rows[x], rows["accuracy"], yerr=rows["accuracy_se"], marker="o", capsize=3, label=label)
    for _, row in done[done[x].isna()].iterrows():  # an arm without the number (no training): a reference line
        ax.axhline(row["accuracy"], linestyle="--", color="grey", label=f"{row['arm']} (no {x})")
    ax.set(xlabel=x, ylabel="accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = "accuracy_over_" + x.replace("/", "_").replace(".", "_") + ".png"
    fig.savefig(Path(output_dir) / name, dpi=110)
    plt.close(fig)
    display(Markdown(f"![accuracy over {x}]({name})"))
if len(numeric) == 2 and len(axes) == 2:  # a grid: accuracy and scoring cost over both numbers
    for metric in ("accuracy", "seconds.scoring", "scoring_flops"):
        if metric not in done:
            continue
        grid = done.pivot_table(index=numeric[0], columns=numeric[1], values=metric)
        fig, ax = plt.subplots(figsize=(1.2 * grid.shape[1] + 2, 0.5 * grid.shape[0] + 1.5))
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", aspect="auto")
        ax.set(xticks=range(grid.shape[1]), xticklabels=grid.columns, yticks=range(grid.shape[0]),
               yticklabels=grid.index, xlabel=numeric[1], ylabel=numeric[0], title=metric)
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        name = f"grid_{metric.replace('.', '_')}.png"
        fig.savefig(Path(output_dir) / name, dpi=110)
        plt.close(fig)
        display(Markdown(f"![{metric} over {numeric[0]} x {numeric[1]}]({name})\n\n" + grid.to_markdown(floatfmt=".3g")))
if not numeric and not logged:
    display(Markdown("No number was swept."))
