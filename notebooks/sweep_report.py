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
# Report of one sweep, read from MLflow: one row per arm (child run), what varied between them, accuracy against
# cost with the Pareto front, and accuracy / frame recall by event depth. Rendered by `xcomp report NAME` or at the
# end of `python run.py -m +experiment=NAME`.

# %% tags=["parameters"]
tracking_uri = "sqlite:///mlflow.db"  # MLflow store holding the sweep
experiment = "xcomp"  # MLflow experiment name
sweep = ""  # the sweep's parent run id
title = "Sweep report"  # heading of the report
command = ""  # the command that made the sweep
output_dir = "."  # where report.md and its PNGs go

# %%
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from xcomp.reporting.sweep import arms_table, pareto_front, sweep_runs

runs = sweep_runs(tracking_uri, experiment, sweep)
axes = runs.attrs["axes"]
done = runs[runs["status"] == "FINISHED"]
display(Markdown(f"# {title}\n\nSweep `{sweep}` in MLflow experiment `{experiment}` ({tracking_uri}): "
                 f"{len(done)} of {len(runs)} jobs finished.\n\nCommand: `{command or '(not recorded)'}`"))

# %% [markdown]
# ## Arms

# %%
table = arms_table(runs)
display(Markdown(table.to_markdown(index=False, floatfmt=".3f")))
display(Markdown("Accuracy ± binomial SE over the arm's questions; `*_ratio`: cost relative to dense over the same "
                 "sampled frames; `seconds.*`: mean per question (`seconds.job`: the whole job)."))

# %% [markdown]
# ## What varied

# %%
display(Markdown(runs[["arm", *axes]].to_markdown(index=False) if axes else "One job: nothing varied."))

# %% [markdown]
# ## Accuracy against cost

# %%
if len(done) and "token_layers_ratio" in done:
    front = pareto_front(done, "token_layers_ratio", "accuracy")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(done["token_layers_ratio"], done["accuracy"], yerr=done["accuracy_se"], fmt="o", alpha=0.7)
    line = done[front].sort_values("token_layers_ratio")
    ax.plot(line["token_layers_ratio"], line["accuracy"], "-", color="C3", label="Pareto front")
    for _, row in done.iterrows():
        ax.annotate(row["arm"], (row["token_layers_ratio"], row["accuracy"]), fontsize=7)
    ax.set(xlabel="visual token-layers / dense", ylabel="accuracy")
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
    columns = sorted(c for c in done if c.startswith(prefix + "."))
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
