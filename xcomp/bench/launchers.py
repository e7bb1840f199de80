"""Launchers and the sweeper, measured: the card's 4-job sweep with the basic launcher and with joblib (2 workers)
side by side, and the Optuna sweeper's own time per trial.

Each sweep is a fresh `run.py -m` process on the same cached suite (rounds alternate the two launchers, so machine
load hits both alike). The sweeper's overhead is what a trial costs beyond its job: Optuna's trial duration minus
the job's own `seconds.job` (composition of the job's config, the launcher, the study's storage), over a short
search of evaluation-only trials.

    python -m xcomp.bench.launchers --n 25      (from the project root, where run.py is)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from xcomp.bench.framework import CARD, project_root, timed


def sweeper_overhead(root: Path, scratch: str, trials: int, n: int) -> list[float]:
    """Seconds per trial outside its job, for ``trials`` evaluation-only trials of search=schedule."""
    import mlflow
    import optuna

    search = ["search=schedule", "train=none", f"val.n={n}", f"search.n_trials={trials}", f"paths.root={scratch}",
              f"logger.tracking_uri=sqlite:///{scratch}/mlflow.db"]  # fmt: skip
    timed([sys.executable, "run.py", "-m", *search], root)
    study = optuna.load_study(study_name="schedule", storage=f"sqlite:///{scratch}/optuna.db")
    client = mlflow.MlflowClient(f"sqlite:///{scratch}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("search_schedule").experiment_id], max_results=1000)
    job = {int(r.data.tags["optuna.trial"]): r.data.metrics["seconds.job"] for r in runs if "optuna.trial" in r.data.tags}
    # seconds.job runs from the job function's start to its metrics: Hydra's per-job setup and the sweeper are outside
    return [(t.datetime_complete - t.datetime_start).total_seconds() - job[t.number] for t in study.trials]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=25, help="questions per family (4 families)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both launchers")
    parser.add_argument("--trials", type=int, default=6, help="trials of the sweeper-overhead search")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (holds run.py)")
    args = parser.parse_args(argv)
    root = project_root(args.root)
    sides = {"basic": [], "joblib, 2 workers": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}
    with tempfile.TemporaryDirectory() as scratch:
        overrides = [f"data.n={args.n}", f"paths.root={scratch}", "rerun=true",
                     f"logger.tracking_uri=sqlite:///{scratch}/mlflow.db"]  # fmt: skip
        timed([sys.executable, "run.py", *overrides], root)  # creates the store and generates the suite
        seconds = {side: [] for side in sides}
        for _ in range(args.rounds):
            for side, launcher in sides.items():
                seconds[side].append(timed([sys.executable, "run.py", "-m", *CARD, *overrides, *launcher], root)[0])
        overhead = sweeper_overhead(root, scratch, args.trials, args.n)
    basic, joblib = (statistics.median(s) for s in seconds.values())
    print(f"the card's sweep (4 jobs) on {4 * args.n} questions each, {args.rounds} rounds (median wall seconds)")
    print("| launcher | seconds | rounds |\n|---|---:|---|")
    for side, values in seconds.items():
        print(f"| {side} | {statistics.median(values):.1f} | {', '.join(f'{s:.1f}' for s in values)} |")
    print(f"speed-up of joblib: {basic / joblib:.2f}x")
    print(f"Optuna sweeper, {len(overhead)} trials: {statistics.mean(overhead):.2f} s per trial outside the job "
          f"(min {min(overhead):.2f}, max {max(overhead):.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
