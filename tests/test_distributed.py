"""The scale path on loopback: two search workers sharing one PostgreSQL study (MLflow on the same server), and a
joblib sweep logging to an `mlflow server`, checked over its REST API. Services come from tests/services.py."""

from __future__ import annotations

import subprocess
import sys

import optuna

from tests.services import mlflow_server, postgres, rest
from tests.test_run import ROOT, TINY
from tests.test_search import SEARCH


def run_py(tmp_path, tracking: str, *overrides: str) -> list[str]:
    return [sys.executable, "run.py", "-m", *overrides, f"paths.root={tmp_path}", f"logger.tracking_uri={tracking}"]


def test_two_workers_share_one_study(tmp_path):
    import mlflow

    with postgres() as database:
        storage, tracking = database("optuna"), database("mlflow")
        # A shared store is created once, before its workers start (the server does it for logger=mlflow_server).
        subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", tracking], check=True, capture_output=True)
        args = run_py(tmp_path, tracking, *SEARCH, "search.n_trials=4", f"search.storage={storage}")
        workers = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for _ in range(2)]  # fmt: skip
        outputs = [w.communicate(timeout=540)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-2000:] for o in outputs)

        trials = optuna.load_study(study_name="schedule", storage=storage).trials
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        assert len(complete) == 4 and len({t.number for t in trials}) == len(trials)
        surplus = [t for t in trials if t not in complete]  # asked by one worker as the other took the last trial
        assert len(surplus) <= 1 and all(t.state.name == "PRUNED" and t.user_attrs.get("surplus") for t in surplus)
        assert len({t.user_attrs["worker"] for t in complete}) == 2  # both workers ran trials
        client = mlflow.MlflowClient(tracking)
        experiment = client.get_experiment_by_name("search_schedule").experiment_id
        runs = client.search_runs([experiment], max_results=1000)
        parents = {r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags}
        jobs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert len(parents) == 1 and {r.data.tags["mlflow.parentRunId"] for r in jobs} == parents
        ran = sorted(t.number for t in complete if "duplicate_of" not in t.user_attrs)  # a repeat takes its values
        assert sorted(int(r.data.tags["optuna.trial"]) for r in jobs) == ran
        assert all(r.info.status == "FINISHED" for r in jobs)


def test_a_parallel_sweep_logs_every_job_once_to_an_mlflow_server(tmp_path):
    with postgres() as database, mlflow_server(database("mlflow"), tmp_path / "served") as url:
        args = run_py(tmp_path, url, "logger=mlflow_server", "compress=lp,heuristic", "seg_len=8,16", *TINY,
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")  # fmt: skip
        res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=540)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

        experiment = rest(url, "experiments/get-by-name", experiment_name="xcomp")["experiment"]["experiment_id"]
        runs = rest(url, "runs/search", {"experiment_ids": [experiment], "max_results": 100})["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        jobs = [r for r, t in zip(runs, tags) if "mlflow.parentRunId" in t]
        assert len(jobs) == 4 and len(runs) == 5
        for job in jobs:
            run_id = job["info"]["run_id"]
            assert job["info"]["status"] == "FINISHED"
            metrics = {m["key"] for m in job["data"]["metrics"]}
            assert {"accuracy", "accuracy_se", "token_layers_ratio", "questions", "seconds.job"} <= metrics
            for key in ("accuracy", "questions"):  # each metric logged once: none lost, none doubled
                history = rest(url, "metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
                assert len(history) == 1
            artifacts = rest(url, "artifacts/list", run_id=run_id).get("files", [])
            assert {"config.yaml", "predictions.jsonl"} <= {a["path"] for a in artifacts}
