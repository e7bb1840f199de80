"""search=schedule: the Optuna sweeper plugin running trials as run.py jobs tracked in MLflow; a killed search
continued; bad search input; the joblib and submitit launchers against the basic one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.test_run import ROOT, TINY, client
from xcomp.compression.schedule import CompressionSchedule

SEARCH = ["search=schedule", "train.steps=2", "val.n=1", *TINY]
"""A search whose trials tune for 2 steps and are scored on 2 validation questions: a few seconds each."""


def command(tmp_path, *overrides):
    return [sys.executable, "run.py", "-m", *overrides, f"paths.root={tmp_path}",
            f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]  # fmt: skip


def study(tmp_path, name="schedule"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db")


def children(tmp_path, experiment):
    c = client(tmp_path)
    runs = c.search_runs([c.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_a_search_runs_its_trials_as_tracked_jobs(tmp_path):
    res = subprocess.run(command(tmp_path, *SEARCH, "search.n_trials=3"), cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    trials = study(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3 and [t.number for t in trials] == [0, 1, 2]
    runs = {int(r.data.tags["optuna.trial"]): r for r in children(tmp_path, "search_schedule")}
    assert sorted(runs) == [0, 1, 2]
    for trial in trials:
        run = runs[trial.number]
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.study"] == "schedule" and run.data.tags["optuna.sampler"] == "TPESampler"
        assert run.data.tags["optuna.storage"] == f"sqlite:///{tmp_path}/optuna.db"
        assert trial.values == [run.data.metrics["val.accuracy"], run.data.metrics["val.token_layers_ratio"]]
        assert "accuracy" not in run.data.metrics  # scored on validation only: the test split stays unseen
        params = {k.removeprefix("schedule."): v for k, v in trial.params.items()}
        expected = CompressionSchedule.parametric(4, **params).kept  # the trial's schedule reached its job
        assert json.loads(run.data.tags["schedule.kept"]) == list(expected)
    parent = client(tmp_path).get_run(runs[0].data.tags["mlflow.parentRunId"])
    logged = {a.path for a in client(tmp_path).list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "pareto.md", "optimization_results.yaml", "summary.csv"} <= logged

    again = subprocess.run(command(tmp_path, *SEARCH, "search.n_trials=3"), cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "0 of 3 trials to run" in again.stdout + again.stderr
    assert len(study(tmp_path).trials) == 3  # a finished search started again runs nothing


def test_a_killed_search_continues_its_study_without_repeating_a_trial(tmp_path):
    args = command(tmp_path, *SEARCH, "search.n_trials=3", "hydra.sweeper.heartbeat_interval=1",
                   "hydra.sweeper.grace_period=2")  # fmt: skip
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)  # fmt: skip
    for line in first.stdout:
        if "#1 :" in line:  # trial 1 launched
            break
    time.sleep(2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(3)  # past the grace period: the killed trial's heartbeat is stale
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    trials = study(tmp_path).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1, states
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    (killed,) = [t.number for t in trials if t.state.name == "FAIL"]  # 1, or 2 when trial 1 ended within the 2 s
    assert killed >= 1 and retry.system_attrs["failed_trial"] == killed and retry.params == trials[killed].params
    copies = {t.number for t in trials if "duplicate_of" in t.user_attrs}  # the restarted sampler's repeats: no job
    jobs = sorted(t.system_attrs.get("failed_trial", t.number) for t in trials
                  if t.state.name == "COMPLETE" and t.number not in copies)  # fmt: skip
    assert jobs == sorted(set(range(len(trials))) - {retry.number} - copies)  # the retry reran (resumed) the killed job
    runs = children(tmp_path, "search_schedule")
    assert sorted(int(r.data.tags["optuna.trial"]) for r in runs) == jobs  # one MLflow run per job: killed's resumed
    assert all(r.info.status == "FINISHED" for r in runs)


def test_a_trial_with_a_finished_trials_parameters_takes_its_values_without_a_job(tmp_path):
    one_schedule = ["hydra.sweeper.custom_search_space=null", "schedule.final=choice(2)", "schedule.shape=choice(linear)"]
    res = subprocess.run(command(tmp_path, *SEARCH, "search.n_trials=3", *one_schedule), cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    first, *repeats = study(tmp_path).trials
    assert [t.state.name for t in (first, *repeats)] == ["COMPLETE"] * 3 and "duplicate_of" not in first.user_attrs
    assert [t.user_attrs.get("duplicate_of") for t in repeats] == [0, 0]
    assert all(t.params == first.params and t.values == first.values for t in repeats)
    (run,) = children(tmp_path, "search_schedule")  # one job ran: the first trial's
    assert run.data.tags["optuna.trial"] == "0" and first.values[0] == run.data.metrics["val.accuracy"]
    parent = run.data.tags["mlflow.parentRunId"]
    table = Path(client(tmp_path).download_artifacts(parent, "trials.csv", str(tmp_path))).read_text()
    assert table.splitlines()[0].split(",").count("user_attrs_duplicate_of") == 1  # the record of repeats


def test_a_budget_search_prunes_schedules_over_budget_before_running_them(tmp_path):
    args = command(tmp_path, "search=schedule_budget", "train=none", "val.n=1", *TINY, "search.n_trials=6",
                   "search.budget=0.5")  # fmt: skip
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    trials = study(tmp_path, "schedule_budget").trials
    assert len(trials) == 6
    for trial in trials:
        params = {k.removeprefix("schedule."): v for k, v in trial.params.items()}
        over = CompressionSchedule.parametric(4, **params).token_layer_ratio() > 0.5
        assert trial.state.name == ("PRUNED" if over else "COMPLETE"), (trial.params, trial.state)
    runs = children(tmp_path, "search_schedule")
    assert len(runs) == sum(t.state.name == "COMPLETE" for t in trials)  # a pruned schedule never ran
    assert all(r.data.metrics["val.token_layers_ratio"] <= 0.5 for r in runs)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["hydra/sweeper/sampler=annealing"], "hydra/sweeper/sampler"),
        (["search.n_trials=0"], "n_trials and n_jobs must be >= 1"),
        (["hydra.sweeper.params=null", "hydra.sweeper.custom_search_space=null"], "the search space is empty"),
        (["search.storage=postgresql://xcomp@127.0.0.1:9/none"], "cannot open the study storage"),
        (["search.n_jobs=2"], "choose a parallel launcher"),
    ],
)
def test_bad_search_input_is_one_line_before_any_trial(tmp_path, override, message):
    res = subprocess.run(command(tmp_path, *SEARCH, *override), cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1 and message in lines[0] and "Traceback" not in res.stderr, res.stderr
    experiment = client(tmp_path).get_experiment_by_name("search_schedule")
    assert experiment is None or not children(tmp_path, "search_schedule")
    assert not (tmp_path / "outputs" / "train").exists()  # no trial trained


def sweep_results(tmp_path, *launcher):
    res = subprocess.run(command(tmp_path, "compress=lp,heuristic", "seg_len=8,16", *TINY, *launcher), cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = children(tmp_path, "xcomp")
    return {
        r.data.tags["overrides"].split(" data.n")[0]: (r.info.status, r.data.metrics["accuracy"], r.data.tags["job.num"])
        for r in runs
    }  # fmt: skip


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    basic = sweep_results(tmp_path_factory.mktemp("basic"))
    assert len(basic) == 4 and all(status == "FINISHED" for status, _, _ in basic.values())
    return basic


@pytest.mark.parametrize(
    "launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], ["hydra/launcher=submitit_local"]]
)
def test_parallel_launchers_give_the_basic_launchers_runs(tmp_path, basic_sweep, launcher):
    assert sweep_results(tmp_path, *launcher) == basic_sweep


def test_a_search_config_overrides_the_primary_defaults(tmp_path):
    """search/*.yaml comes after run.yaml's own values in the defaults list, so its settings hold."""
    from tests.test_run import compose_run

    cfg = compose_run(tmp_path, "search=schedule")
    assert cfg.frames == 32 and cfg.val.n == 25 and cfg.test is False and cfg.train.steps == 30
    assert compose_run(tmp_path, "search=schedule", "frames=16").frames == 16  # the command line still wins


def test_the_cluster_launcher_is_configured(tmp_path):
    """SLURM cannot run here: the submitit_slurm launcher of the cluster recipe of docs/scale.md composes with its settings."""
    from tests.test_run import compose_run

    cfg = compose_run(tmp_path, "search=schedule", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                      "hydra.launcher.gpus_per_node=1", "search.storage=postgresql://u@db/optuna", "trainer=gpu")  # fmt: skip
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.partition == "gpu"
    assert cfg.hydra.sweeper.storage == "postgresql://u@db/optuna" and cfg.hydra.sweeper.trial_key == "trial"
